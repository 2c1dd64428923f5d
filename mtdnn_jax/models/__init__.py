"""Models: the BERT encoder (and, later, the MT-DNN heads on top of it)."""
from mtdnn_jax.models.config import EncoderConfig
from mtdnn_jax.models.bert import BertEncoder, EncoderOutput

__all__ = ["EncoderConfig", "BertEncoder", "EncoderOutput"]
