"""Where real data come from: URLs, file names and pinned checksums (DESIGN.md section 5).

Deliberately free of heavy imports: the Snakefile reads it while building the job graph, and a
dry run of the largest preset must take seconds.

The md5s of the CIFAR and Tiny ImageNet archives are the values torchvision and the dataset
pages publish. The Cadena et al. 2019 zip has no checksum we could verify from our build
machines; its sha256 comes from the config (``recordings.<name>.sha256``), pinned by the user.
"""

from __future__ import annotations

SOURCES = {
    "cifar10": {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "filename": "cifar-10-python.tar.gz",
                "md5": "c58f30108f718f92721af3b95e74349a"},
    "cifar100": {"url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "filename": "cifar-100-python.tar.gz",
                 "md5": "eb9058c3a382ffc7106e4002c42a8d85"},
    "tiny_imagenet": {"url": "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                      "filename": "tiny-imagenet-200.zip",
                      "md5": "90528d7ca1a48142e341f4ef8d21d0de"},
    "cadena": {"url": "https://doid.gin.g-node.org/2e31e304e03d6357c98ac735a1fe5788/"
                      "2e31e304e03d6357c98ac735a1fe5788.zip",
               "filename": "cadena_ploscb19_data.zip",
               "sha256": None},
}

# torchvision's VGG19_Weights.IMAGENET1K_V1 (the hash prefix in the name is checked by torch.hub)
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILE = "vgg19-dcbb9e9d.pth"


def source_spec(entry: dict, table: str):
    """The declared source (:mod:`neurobias.registry`) of a ``datasets`` or ``recordings`` entry."""
    from .registry import dataset_sources, recording_sources
    return {"datasets": dataset_sources, "recordings": recording_sources}[table]()[entry["source"]]


def download_key(entry: dict, table: str) -> str | None:
    """The key of :data:`SOURCES` a config entry downloads (its source's ``download``), or None."""
    return source_spec(entry, table).download


def download_filename(entry: dict, table: str) -> str | None:
    """The file a config entry of ``table`` (datasets or recordings) downloads, or None for
    sources that download nothing."""
    key = download_key(entry, table)
    return None if key is None else SOURCES[key]["filename"]


def image_size_of(entry: dict) -> int:
    """Image side length of a dataset config entry (the prepared images are square): its source's
    declared size, else the entry's own ``image_size`` (synthetic: which the schema defaults)."""
    size = source_spec(entry, "datasets").image_size
    return int(entry["image_size"]) if size is None else int(size)
