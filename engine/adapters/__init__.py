"""Exchange adapters: one exchange-agnostic interface (``base.ExchangeAdapter``), one package per venue."""
