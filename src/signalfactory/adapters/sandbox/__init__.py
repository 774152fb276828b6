"""The strategy sandbox: uploaded Python strategies run here, never in the server.

- ``pool``: ``ProcessSandbox``, the ``StrategySandbox`` port; warm workers per program,
  limits enforced, breaches named;
- ``template_client`` / ``template``: the clean process that preloads the allowed modules
  and forks workers;
- ``worker``: a worker's isolation (network namespace, empty root, unprivileged user,
  resource limits) and its load/run loop;
- ``guard``: the audit hook, restricted builtins and import function inside a worker;
- ``wire``: frames, bars through shared memory, and the server's check of every answer.
"""
