"""lightning-hw plugin: two small real tables from the UCI repository, offline (bundled with scikit-learn).

Registers the datamodules ``Wine`` and ``BreastCancer`` for the built-in ``Classifier`` task.
"""

__version__ = "0.1.0"
