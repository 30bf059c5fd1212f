"""Source adapters: where readings come from (the vendor's energy-storage cloud)."""
