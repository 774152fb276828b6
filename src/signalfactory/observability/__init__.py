"""The bottom layer beside the domain: structured logs and the metric definitions.

Everything above may import it; it imports nothing of ours but the domain and settings.
"""
