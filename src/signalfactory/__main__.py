from signalfactory.cli import main

main()
