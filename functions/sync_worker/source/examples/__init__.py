"""Example source adapters (the README's walk-through of the plug-in seam)."""
