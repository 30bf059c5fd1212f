"""Operator CLI of c2c-sync: drive and inspect a deployed environment from a terminal.

`c2c-sync signal ...` sends start signals, `c2c-sync status` reads the worker's state; both find
the deployed resources through the CloudFormation outputs of the environment's stacks.
"""
