"""The anti-spoofing case study: dynamic thin ResNet and LCNN countermeasures (see :mod:`.study`)."""
