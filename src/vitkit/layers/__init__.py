"""Building blocks shared by every family, written once for 2-D (image) and 3-D (video)."""
from .attention import Attention, attention, explicit_attention, record_attention
from .drop_path import DropPath, drop_path, drop_path_rates
from .mlp import Mlp
from .nd import avgpool_nd, batchnorm_nd, conv_nd, maxpool_nd, pad_to_multiple, to_tuple
from .patch_embed import PatchEmbed
from .pos_embed import infer_grid, resample_1d, resample_grid, resample_pos_embed, resample_rel_pos_table

__all__ = [
    "Attention", "attention", "explicit_attention", "record_attention",
    "DropPath", "drop_path", "drop_path_rates", "Mlp",
    "avgpool_nd", "batchnorm_nd", "conv_nd", "maxpool_nd", "pad_to_multiple", "to_tuple", "PatchEmbed",
    "infer_grid", "resample_1d", "resample_grid", "resample_pos_embed", "resample_rel_pos_table",
]
