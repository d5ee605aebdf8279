"""The logger of model loading, under classic's name, so that configuring
`transformer_lens.loading_from_pretrained.logger` reaches every loading message."""

import logging

logger = logging.getLogger("transformer_lens.loading_from_pretrained")
