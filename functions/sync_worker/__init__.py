"""The c2c-sync worker: a long-lived process that turns start signals into sync cycles."""
