"""The trigger Lambda: turns a schedule tick, an HTTPS call or a heartbeat alarm into one start signal.

It only *starts* work; the long-lived worker does it, over connections it keeps open across cycles
(see ARCHITECTURE.md).
"""
