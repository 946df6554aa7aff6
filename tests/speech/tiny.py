"""A few-thousand-parameter SEW with SEW-tiny's 320-sample frame stride: the speech tests' model."""
from prunelib.speech.models import SewArch

TINY = SewArch(
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    num_conv_pos_embeddings=7,
    num_conv_pos_embedding_groups=4,
    conv_dim=(8, 16, 32),
    conv_stride=(5, 8, 8),
    conv_kernel=(10, 8, 8),
)
