"""The six CDK stacks of one c2c-sync environment: network, messaging, cache, sync service, trigger,
monitoring. Each takes typed constructor arguments; `infra.environment.add_environment(app, config)`
instantiates all six from an environment's config, and app.py and the infra tests both go through
it, so what the tests check is what `cdk synth` builds. Shared constructs and helpers live in
`infra/`.
"""
