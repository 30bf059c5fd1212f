"""The CDK stacks of c2c-sync and the small constructs they share.

`stacks.deployment.add_environment(app, config)` instantiates every stack of one environment;
app.py and the infra tests both go through it, so what the tests check is what `cdk synth` builds.
"""
