"""Published weights: the zoo (``model.tag`` records), download / cache / mirror, conversion and cards.

``vitkit.create_model(name, pretrained=True | "tag")`` uses :func:`load_pretrained`; ``vitkit models
--pretrained`` lists the zoo and ``vitkit card NAME`` prints a record's card.
"""
from . import zoo  # noqa: F401  (the records register themselves in .spec)
from .cards import card, zoo_markdown
from .download import DownloadError, cache_path, fetch, mirror_url, vitkit_home
from .load import converted_path, load_pretrained, weights_file
from .spec import Weights, get_weights, list_pretrained, register_weights, tags_of

__all__ = [
    "DownloadError", "Weights", "cache_path", "card", "converted_path", "fetch", "get_weights",
    "list_pretrained", "load_pretrained", "mirror_url", "register_weights", "tags_of", "vitkit_home",
    "weights_file", "zoo_markdown",
]
