"""Contracts shared by the trigger Lambda, the sync worker, the stacks and the operator CLI.

Each concept is defined once here and imported everywhere else, so the two ends of a contract
cannot drift apart.
"""
