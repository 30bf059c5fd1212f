"""What the CDK app needs besides the six stacks: names and paths, cdk-nag acknowledgements, Lambda
bundling, the worker's container environment from the config, log retention, and the composition
of one environment's stacks (`infra.environment`, the one module here that imports `stacks/`)."""
