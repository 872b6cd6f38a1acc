"""sinerec: multi-interest sequential recommendation around SINE (Tan et al., WSDM 2021)."""

__version__ = "0.1.0"
