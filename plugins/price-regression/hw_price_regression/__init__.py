"""lightning-hw plugin: regress a phone's price from its 20 specification features (E7, regression variant).

Registered through entry points (see ``pyproject.toml``), so configs use the short names
``PriceRegressor`` and ``MobilePriceCSV``.
"""

__version__ = "0.1.0"
