"""The weights zoo: the published weights of every family, as data.

Sources (the ``source`` of each record): timm's ``pretrained_cfg`` (installed ``timm/models/*.py``: URLs, hub ids,
preprocessing) and its ``results/results-imagenet.csv`` (timm's evaluation of those very files: ImageNet-1k val,
one centre crop at the file's ``crop_pct``); torchvision's ``Weights`` enums (URLs, accuracies, transforms);
the official model-zoo pages (Video Swin README, Sense-X/UniFormer Hugging Face cards, facebookresearch/mvit).
Hashes: torchvision and timm release files carry the sha256 prefix in their name (torch.hub convention); a
Hugging Face hub file stored with Git LFS has its full sha256 in its LFS pointer (recorded here where known); the
rest are recorded at the first download (see ``download.py``). PySlowFast MODEL_ZOO.md (MViT v1 / v2 video) and the
Sense-X model zoo pages were read for the MViT and UniFormer rows; files published only on Google Drive or Baidu
(UniFormer token-labelling and 384 models, MViT-B 16x4 / B-16 image) have no direct URL and are not listed.
"""
from __future__ import annotations

from .spec import Weights, hf_url, register_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TIMM_EVAL = "timm results-imagenet.csv (timm's evaluation of this file)"
TIMM_PROTOCOL = "ImageNet-1k val, 1 centre crop at crop_pct, single view"
TV_IMG = "torchvision Weights metadata"
TV_IMG_PROTOCOL = "ImageNet-1k val, resize then 1 centre crop (torchvision transforms)"
APACHE, MIT = "Apache-2.0", "MIT"
TV_LICENSE = "BSD-3-Clause (torchvision-trained weights)"
SWAG_LICENSE = "CC-BY-NC-4.0 (facebookresearch/SWAG LICENSE)"

# -- ViT ---------------------------------------------------------------------------------------------------------
_AUGREG = "https://storage.googleapis.com/vit_models/augreg/"
_VIT_SRC = "timm vision_transformer.py pretrained_cfg; google-research/vision_transformer (How to train your ViT)"
_AUGREG_PAPER = "Steiner et al., How to train your ViT? (TMLR 2022)"
_JX = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/"


def _augreg(model: str, tag: str, file: str, top1=None, top5=None, size: int = 224, **kw) -> Weights:
    pretrain = {"augreg_in21k_ft_in1k": "ImageNet-21k, fine-tuned on ImageNet-1k", "augreg_in1k": "ImageNet-1k",
                "augreg_in21k": "ImageNet-21k"}[tag]
    return Weights(model, tag, _AUGREG + file, "jax-npz", APACHE, kw.pop("labels", "imagenet-1k"), _VIT_SRC,
                   pretrain=pretrain, top1=top1, top5=top5, reported_by=TIMM_EVAL if top1 else "",
                   protocol=TIMM_PROTOCOL if top1 else "", paper=_AUGREG_PAPER,
                   crop_pct=1.0 if size >= 384 else 0.9, **kw)


def _tv(model: str, tag: str, file: str, top1: float, top5: float, *, crop: float, interp: str,
        license: str = TV_LICENSE, pretrain: str = "ImageNet-1k", **kw) -> Weights:
    return Weights(model, tag, "https://download.pytorch.org/models/" + file, "torchvision", license,
                   kw.pop("labels", "imagenet-1k"), "torchvision Weights enum", pretrain=pretrain, top1=top1,
                   top5=top5, reported_by=TV_IMG, protocol=kw.pop("protocol", TV_IMG_PROTOCOL),
                   mean=kw.pop("mean", IMAGENET_MEAN), std=kw.pop("std", IMAGENET_STD), interpolation=interp,
                   crop_pct=crop, **kw)


def _orig_in21k(model: str, name: str) -> Weights:
    """The ViT paper's own ImageNet-21k checkpoint (gs://vit_models/imagenet21k), as timm hosts it without the
    21k classifier (the starting point of the paper's fine-tuning, Table 5)."""
    return Weights(model, "orig_in21k", hf_url(f"timm/{model}.orig_in21k", "model.safetensors"), "timm", APACHE,
                   "none", "timm vision_transformer.py pretrained_cfg (hub id timm/, num_classes=0)",
                   pretrain="ImageNet-21k (original ViT paper release); no classifier", crop_pct=0.9,
                   paper=f"Dosovitskiy et al., ICLR 2021 ({name}; fine-tuned results in Table 5)",
                   notes="a backbone: the file has no classifier; fine-tune it (recipes in configs/finetune/)")


_I21 = "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"
_L21 = "L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1"
register_weights(
    Weights("vit_base_patch16_224", "augreg2_in21k_ft_in1k",
            hf_url("timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "model.safetensors"), "timm", APACHE,
            "imagenet-1k", "timm vision_transformer.py pretrained_cfg (hub id timm/)",
            pretrain="ImageNet-21k (AugReg), re-fine-tuned on ImageNet-1k by timm", top1=85.108, top5=97.530,
            reported_by=TIMM_EVAL, protocol=TIMM_PROTOCOL, paper=_AUGREG_PAPER, crop_pct=0.9, default=True),
    _augreg("vit_base_patch16_224", "augreg_in21k_ft_in1k",
            f"{_I21}--imagenet2012-steps_20k-lr_0.01-res_224.npz", 84.534, 97.300),
    _augreg("vit_base_patch16_224", "augreg_in1k",
            "B_16-i1k-300ep-lr_0.001-aug_strong2-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_224.npz",
            79.154, 94.108),
    _augreg("vit_base_patch16_224", "augreg_in21k", f"{_I21}.npz", labels="imagenet-21k",
            notes="ImageNet-21k pre-training checkpoint (21,843 classes); fine-tune it, its head is the 21k one"),
    Weights("vit_base_patch16_224", "orig_in21k_ft_in1k", _JX + "jx_vit_base_p16_224-80ecf9dd.pth", "timm",
            APACHE, "imagenet-1k", "timm vision_transformer.py pretrained_cfg (the original JAX release, ported)",
            pretrain="ImageNet-21k, fine-tuned on ImageNet-1k (original ViT paper release)", top1=81.782,
            top5=96.122, reported_by=TIMM_EVAL, protocol=TIMM_PROTOCOL,
            paper="Dosovitskiy et al., ICLR 2021, Table 2 / 5", crop_pct=0.9),
    _tv("vit_base_patch16_224", "tv_in1k", "vit_b_16-c867db91.pth", 81.072, 95.318, crop=224 / 256,
        interp="bilinear", notes="torchvision's own training (modified DeiT recipe)"),
    _augreg("vit_base_patch16_384", "augreg_in21k_ft_in1k",
            f"{_I21}--imagenet2012-steps_20k-lr_0.01-res_384.npz", 86.010, 97.998, size=384, default=True),
    _augreg("vit_base_patch16_384", "augreg_in1k",
            "B_16-i1k-300ep-lr_0.001-aug_strong2-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_384.npz",
            81.102, 95.334, size=384),
    Weights("vit_base_patch16_384", "orig_in21k_ft_in1k", _JX + "jx_vit_base_p16_384-83fb41ba.pth", "timm",
            APACHE, "imagenet-1k", "timm vision_transformer.py pretrained_cfg (the original JAX release, ported)",
            pretrain="ImageNet-21k, fine-tuned on ImageNet-1k at 384 (original ViT paper release)", top1=84.212,
            top5=97.210, reported_by=TIMM_EVAL, protocol=TIMM_PROTOCOL,
            paper="Dosovitskiy et al., ICLR 2021, Table 5 (ViT-B/16, 384)", crop_pct=1.0),
    _tv("vit_base_patch16_384", "tv_swag_e2e_in1k", "vit_b_16_swag-9ac1b537.pth", 85.304, 97.650, crop=1.0,
        interp="bicubic", license=SWAG_LICENSE, pretrain="Instagram (SWAG), fine-tuned end to end on ImageNet-1k"),
    _augreg("vit_tiny_patch16_224", "augreg_in21k_ft_in1k",
            "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz",
            75.452, 92.858),
    _augreg("vit_small_patch16_224", "augreg_in21k_ft_in1k",
            "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz",
            81.402, 96.150),
    _augreg("vit_small_patch16_224", "augreg_in1k",
            "S_16-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz",
            78.842, 94.280),
    _augreg("vit_base_patch32_224", "augreg_in21k_ft_in1k",
            "B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz",
            80.732, 95.574),
    _augreg("vit_base_patch32_224", "augreg_in1k",
            "B_32-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_224.npz",
            74.908, 91.770),
    _tv("vit_base_patch32_224", "tv_in1k", "vit_b_32-d86f8d99.pth", 75.912, 92.466, crop=224 / 256,
        interp="bilinear"),
    _augreg("vit_large_patch16_224", "augreg_in21k_ft_in1k",
            f"{_L21}--imagenet2012-steps_20k-lr_0.01-res_224.npz", 85.856, 97.822),
    _tv("vit_large_patch16_224", "tv_in1k", "vit_l_16-852ce7e3.pth", 79.662, 94.638, crop=224 / 242,
        interp="bilinear"),
    _tv("vit_large_patch16_224", "tv_swag_lincls_in1k", "vit_l_16_lc_swag-4d563306.pth", 85.146, 97.422,
        crop=1.0, interp="bicubic", license=SWAG_LICENSE,
        pretrain="Instagram (SWAG), frozen trunk + linear classifier on ImageNet-1k"),
    _augreg("vit_large_patch16_384", "augreg_in21k_ft_in1k",
            f"{_L21}--imagenet2012-steps_20k-lr_0.01-res_384.npz", 87.096, 98.302, size=384),
    *(_orig_in21k(m, name) for m, name in (("vit_base_patch16_224", "ViT-B/16"), ("vit_base_patch32_224", "ViT-B/32"),
                                           ("vit_large_patch16_224", "ViT-L/16"))),
    Weights("vit_huge_patch14_224", "orig_in21k", hf_url("timm/vit_huge_patch14_224.orig_in21k",
                                                          "model.safetensors"), "timm", APACHE, "none",
            "timm vision_transformer.py pretrained_cfg (hub id timm/, num_classes=0)",
            pretrain="ImageNet-21k (original ViT paper release); no classifier", crop_pct=0.9,
            paper="Dosovitskiy et al., ICLR 2021 (ViT-H/14)", notes="a backbone: the file has no classifier"),
    _tv("vit_huge_patch14_224", "tv_swag_lincls_in1k", "vit_h_14_lc_swag-c1eb923e.pth", 85.708, 97.730,
        crop=1.0, interp="bicubic", license=SWAG_LICENSE,
        pretrain="Instagram (SWAG), frozen trunk + linear classifier on ImageNet-1k"),
    Weights("vit_base_r50_s16_384", "orig_in21k_ft_in1k", _JX + "jx_vit_base_resnet50_384-9fd3c705.pth", "timm",
            APACHE, "imagenet-1k", "timm vision_transformer_hybrid.py pretrained_cfg (the original JAX release)",
            pretrain="ImageNet-21k, fine-tuned on ImageNet-1k at 384", top1=84.988, top5=97.296,
            reported_by=TIMM_EVAL, protocol=TIMM_PROTOCOL,
            paper="Dosovitskiy et al., ICLR 2021, Table 6 (R50+ViT-B/16)", crop_pct=1.0),
)

# -- Swin ---------------------------------------------------------------------------------------------------------
_MS = "https://github.com/SwinTransformer/storage/releases/download/"
_SWIN_SRC = "microsoft/Swin-Transformer model zoo (URLs as timm swin_transformer.py pretrained_cfg)"
_SWIN_PAPER = "Liu et al., ICCV 2021, Table 1"


def _ms(model: str, tag: str, path: str, top1=None, top5=None, **kw) -> Weights:
    pretrain = {"ms_in1k": "ImageNet-1k", "ms_in22k_ft_in1k": "ImageNet-22k, fine-tuned on ImageNet-1k",
                "ms_in22k": "ImageNet-22k"}[tag]
    labels = "imagenet-22k" if tag == "ms_in22k" else "imagenet-1k"
    return Weights(model, tag, _MS + path, "official", MIT, labels, _SWIN_SRC, pretrain=pretrain, top1=top1,
                   top5=top5, reported_by=TIMM_EVAL if top1 else "", protocol=TIMM_PROTOCOL if top1 else "",
                   paper=_SWIN_PAPER, **kw)


_T, _S, _B, _B384, _L, _L384 = ("swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
                                "swin_base_patch4_window7_224", "swin_base_patch4_window12_384",
                                "swin_large_patch4_window7_224", "swin_large_patch4_window12_384")
register_weights(
    _ms(_T, "ms_in1k", "v1.0.0/swin_tiny_patch4_window7_224.pth", 81.388, 95.540, default=True),
    _ms(_T, "ms_in22k_ft_in1k", "v1.0.8/swin_tiny_patch4_window7_224_22kto1k_finetune.pth", 80.966, 96.020),
    _ms(_T, "ms_in22k", "v1.0.8/swin_tiny_patch4_window7_224_22k.pth"),
    _tv(_T, "tv_in1k", "swin_t-704ceda3.pth", 81.474, 95.776, crop=224 / 232, interp="bicubic"),
    _ms(_S, "ms_in1k", "v1.0.0/swin_small_patch4_window7_224.pth", 83.228, 96.326, default=True),
    _ms(_S, "ms_in22k_ft_in1k", "v1.0.8/swin_small_patch4_window7_224_22kto1k_finetune.pth", 83.330, 96.996),
    _ms(_S, "ms_in22k", "v1.0.8/swin_small_patch4_window7_224_22k.pth"),
    _tv(_S, "tv_in1k", "swin_s-5e29d889.pth", 83.196, 96.360, crop=224 / 246, interp="bicubic"),
    _ms(_B, "ms_in22k_ft_in1k", "v1.0.0/swin_base_patch4_window7_224_22kto1k.pth", 85.276, 97.566, default=True),
    _ms(_B, "ms_in1k", "v1.0.0/swin_base_patch4_window7_224.pth", 83.604, 96.450),
    _ms(_B, "ms_in22k", "v1.0.0/swin_base_patch4_window7_224_22k.pth"),
    _tv(_B, "tv_in1k", "swin_b-68c6b09e.pth", 83.582, 96.640, crop=224 / 238, interp="bicubic"),
    _ms(_B384, "ms_in22k_ft_in1k", "v1.0.0/swin_base_patch4_window12_384_22kto1k.pth", 86.442, 98.068,
        default=True),
    _ms(_B384, "ms_in1k", "v1.0.0/swin_base_patch4_window12_384.pth", 84.478, 96.886),
    _ms(_B384, "ms_in22k", "v1.0.0/swin_base_patch4_window12_384_22k.pth"),
    _ms(_L, "ms_in22k_ft_in1k", "v1.0.0/swin_large_patch4_window7_224_22kto1k.pth", 86.320, 97.890, default=True),
    _ms(_L, "ms_in22k", "v1.0.0/swin_large_patch4_window7_224_22k.pth"),
    _ms(_L384, "ms_in22k_ft_in1k", "v1.0.0/swin_large_patch4_window12_384_22kto1k.pth", 87.142, 98.228,
        default=True),
    _ms(_L384, "ms_in22k", "v1.0.0/swin_large_patch4_window12_384_22k.pth"),
)

# -- Video Swin ----------------------------------------------------------------------------------------------------
_VSWIN_SRC = "SwinTransformer/Video-Swin-Transformer README (Kinetics-400/600 model zoo)"
_VSWIN_PROTOCOL = "Kinetics val, 32x2 clips, 4 clips x 3 crops (official test config)"
_TV_VID_SWIN = "Kinetics-400 val, video-level: 12 clips of 32 frames at 15 fps, 1 crop (torchvision)"
_TV_VID_MVIT = "Kinetics-400 val, video-level: 5 clips of 16 frames at 7.5 fps, 1 crop (torchvision)"


def _vswin(model: str, tag: str, file: str, top1: float, top5: float, pretrain: str, **kw) -> Weights:
    return Weights(model, tag, _MS + "v1.0.4/" + file, "openmmlab", APACHE, kw.pop("labels", "kinetics-400"),
                   _VSWIN_SRC, pretrain=pretrain, top1=top1, top5=top5, reported_by="Video Swin README",
                   protocol=_VSWIN_PROTOCOL, paper="Liu et al., Video Swin Transformer, CVPR 2022, Tables 1-2",
                   **kw)


def _tv_video(model: str, tag: str, file: str, top1: float, top5: float, protocol: str, pretrain: str,
              license: str, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Weights:
    return Weights(model, tag, "https://download.pytorch.org/models/" + file, "torchvision", license,
                   "kinetics-400", "torchvision video Weights enum", pretrain=pretrain, top1=top1, top5=top5,
                   reported_by="torchvision Weights metadata (ported from the paper)", protocol=protocol,
                   mean=mean, std=std, interpolation="bilinear", crop_pct=224 / 256)


register_weights(
    _vswin("swin3d_tiny", "k400_in1k", "swin_tiny_patch244_window877_kinetics400_1k.pth", 78.8, 93.6,
           "ImageNet-1k, then Kinetics-400", default=True),
    _tv_video("swin3d_tiny", "tv_k400_in1k", "swin3d_t-7615ae03.pth", 77.715, 93.519, _TV_VID_SWIN,
              "ImageNet-1k, then Kinetics-400 (official weights, ported)", APACHE),
    _vswin("swin3d_small", "k400_in1k", "swin_small_patch244_window877_kinetics400_1k.pth", 80.6, 94.5,
           "ImageNet-1k, then Kinetics-400", default=True),
    _tv_video("swin3d_small", "tv_k400_in1k", "swin3d_s-da41c237.pth", 79.521, 94.158, _TV_VID_SWIN,
              "ImageNet-1k, then Kinetics-400 (official weights, ported)", APACHE),
    _vswin("swin3d_base", "k400_in1k", "swin_base_patch244_window877_kinetics400_1k.pth", 80.6, 94.6,
           "ImageNet-1k, then Kinetics-400", default=True),
    _vswin("swin3d_base", "k400_in22k", "swin_base_patch244_window877_kinetics400_22k.pth", 82.7, 95.5,
           "ImageNet-22k, then Kinetics-400"),
    _tv_video("swin3d_base", "tv_k400_in1k", "swin3d_b_1k-24f7c7c6.pth", 79.427, 94.386, _TV_VID_SWIN,
              "ImageNet-1k, then Kinetics-400 (official weights, ported)", APACHE),
    _tv_video("swin3d_base", "tv_k400_in22k", "swin3d_b_22k-7c6ae6fa.pth", 81.643, 95.574, _TV_VID_SWIN,
              "ImageNet-22k, then Kinetics-400 (official weights, ported)", APACHE),
)

# -- MViT ----------------------------------------------------------------------------------------------------------
_KIN = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
_MVIT2_SRC = "facebookresearch/mvit model zoo (URLs as timm mvitv2.py pretrained_cfg)"


def _mvit2(model: str, file: str, top1: float, name: str) -> Weights:
    return Weights(model, "fb_in1k", "https://dl.fbaipublicfiles.com/mvit/mvitv2_models/" + file, "pyslowfast",
                   APACHE, "imagenet-1k", _MVIT2_SRC, pretrain="ImageNet-1k", top1=top1,
                   reported_by="facebookresearch/mvit README / MViTv2 paper Table 2",
                   protocol="ImageNet-1k val, 224, 1 centre crop", paper=f"Li et al., MViTv2, CVPR 2022, Table 2 ({name})",
                   crop_pct=0.9, default=True)


_PYSF = "https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/"
_PYSF_SRC = "facebookresearch/SlowFast MODEL_ZOO.md (Kinetics 400 and 600)"


def _pysf(model: str, tag: str, path: str, top1: float, top5: float, labels: str, frames: int, rate: int,
          paper: str, source: str = _PYSF_SRC, **kw) -> Weights:
    """A PySlowFast release (``{"model_state": ...}``, PySlowFast keys): SlowFast's Kinetics normalisation."""
    return Weights(model, tag, _PYSF + path, "pyslowfast", APACHE, labels, source,
                   pretrain=f"{'Kinetics-400' if labels == 'kinetics-400' else 'Kinetics-600'} from scratch",
                   top1=top1, top5=top5, reported_by=source.split(" (")[0],
                   protocol=f"{labels.capitalize()} val, {frames} frames at stride {rate}, 1 crop x 5 clips "
                            "(short side 256, centre crop 224)", paper=paper, mean=_KIN[0], std=_KIN[1],
                   interpolation="bilinear", crop_pct=224 / 256, **kw)


register_weights(
    _tv_video("mvit_base_16x4", "tv_k400", "mvit_v1_b-dbeb1030.pth", 78.477, 93.582, _TV_VID_MVIT,
              "Kinetics-400 from scratch (PySlowFast MVIT_B_16x4_CONV, ported)", APACHE, *_KIN),
    _tv_video("mvit_v2_s", "tv_k400", "mvit_v2_s-ae3be167.pth", 80.757, 94.665, _TV_VID_MVIT,
              "Kinetics-400 from scratch (PySlowFast MViTv2-S 16x4, ported)", APACHE, *_KIN),
    _pysf("mvit_base24_32x3", "k400", "mvit/k400.pyth", 80.4, 94.8, "kinetics-400", 32, 3,
          "Fan et al., MViT, ICCV 2021 (MViT-B-24 32x3; Table 4's depth-16 32x3 reports 80.2)",
          notes="the MODEL_ZOO row of config Kinetics/MVIT_B_32x3_CONV (which builds the depth-24 MViT-B-24); its "
                "dataset column says K600, but this is the Kinetics-400 file (k400.pyth, 80.4 on K400)",
          default=True),
    _pysf("mvit_base24_32x3", "k600", "mvit/k600.pyth", 83.9, 96.5, "kinetics-600", 32, 3,
          "Fan et al., MViT, ICCV 2021, Table 5 (MViT-B-24 32x3, K600: 83.8)",
          notes="config Kinetics/MVIT_B_32x3_CONV_K600; 600-class head"),
    _pysf("mvit_v2_s", "k400", "mvitv2/pysf_video_models/MViTv2_S_16x4_k400_f302660347.pyth", 81.0, 94.6,
          "kinetics-400", 16, 4, "Li et al., MViTv2, CVPR 2022 (Kinetics-400, MViTv2-S 16x4: 81.0)",
          source="facebookresearch/SlowFast projects/mvitv2/README.md (Kinetics-400 model zoo)",
          notes="config Kinetics/MVITv2_S_16x4; the official file of which tv_k400 is torchvision's port"),
    _mvit2("mvitv2_tiny", "MViTv2_T_in1k.pyth", 82.3, "MViTv2-T"),
    _mvit2("mvitv2_small", "MViTv2_S_in1k.pyth", 83.6, "MViTv2-S"),
    _mvit2("mvitv2_base", "MViTv2_B_in1k.pyth", 84.4, "MViTv2-B"),
)

# -- UniFormer ----------------------------------------------------------------------------------------------------
_UF_IMG = "Sense-X/uniformer_image Hugging Face model card"
_UF_VID = "Sense-X/uniformer_video Hugging Face model card"
register_weights(
    Weights("uniformer_small", "in1k", hf_url("Sense-X/uniformer_image", "uniformer_small_in1k.pth"), "official",
            MIT, "imagenet-1k", _UF_IMG, pretrain="ImageNet-1k", top1=82.9, reported_by=_UF_IMG,
            protocol="ImageNet-1k val, 224, 1 centre crop", paper="Li et al., UniFormer (TPAMI), Table 7",
            default=True),
    Weights("uniformer_base", "in1k", hf_url("Sense-X/uniformer_image", "uniformer_base_in1k.pth"), "official",
            MIT, "imagenet-1k", _UF_IMG, pretrain="ImageNet-1k", top1=83.8, reported_by=_UF_IMG,
            sha256="82c01015818cb897b00a29352043053df53ce4c02c2d012226b3a8a12ccb60eb",
            protocol="ImageNet-1k val, 224, 1 centre crop", paper="Li et al., UniFormer (TPAMI), Table 7",
            default=True),
    Weights("uniformer_small_16x4", "k400_16x8", hf_url("Sense-X/uniformer_video", "uniformer_small_k400_16x8.pth"),
            "official", MIT, "kinetics-400", _UF_VID, pretrain="ImageNet-1k, then Kinetics-400", top1=78.4,
            sha256="d5fd7b0c49ee6a5422ef5d0c884d962c742003bfbd900747485eb99fa269d0db",
            reported_by=_UF_VID, protocol="Kinetics-400 val, 16 frames at stride 8, 1 clip x 1 crop",
            paper="Li et al., UniFormer, ICLR 2022 (single-clip model of the Hugging Face card)",
            notes="trained with 16 frames sampled every 8 (16x8), the architecture of uniformer_small_16x4",
            default=True),
    Weights("uniformer_small_16x4", "k600_16x8", hf_url("Sense-X/uniformer_video", "uniformer_small_k600_16x8.pth"),
            "official", MIT, "kinetics-600", _UF_VID, pretrain="ImageNet-1k, then Kinetics-600", top1=80.8,
            sha256="2a9143a63691c442b23f912ed3489e5800fc5916fb7aa1b25322ad5da2466c6f",
            reported_by=_UF_VID, protocol="Kinetics-600 val, 16 frames at stride 8, 1 clip x 1 crop",
            paper="Li et al., UniFormer, ICLR 2022 (single-clip model of the Hugging Face card)",
            notes="trained with 16 frames sampled every 8 (16x8); 600-class head"),
    Weights("uniformer_base_32x4", "k600", hf_url("Sense-X/uniformer_video", "uniformer_base_k600_32x4.pth"),
            "official", MIT, "kinetics-600", _UF_VID, pretrain="ImageNet-1k, then Kinetics-600", top1=82.4,
            sha256="d44685e1d12e5aa413032e7719a8be45b95a19da4e7f76ac0e811f9a6f4825ae",
            reported_by=_UF_VID, protocol="Kinetics-600 val, 32 frames at stride 4, 1 clip x 1 crop",
            paper="Li et al., UniFormer, ICLR 2022 (single-clip model of the Hugging Face card)",
            notes="600-class head", default=True),
)
_UF_README = "Sense-X/UniFormer video_classification/README.md (model zoo)"
_UF_SHA = "sha256 from the file's Git LFS pointer on the Hugging Face hub"


def _uf_video(model: str, tag: str, repo: str, file: str, sha256: str, top1: float, labels: str, pretrain: str,
              protocol: str, paper: str, **kw) -> Weights:
    """A Sense-X UniFormer video file on the Hugging Face hub (the official model, raw state dict)."""
    return Weights(model, tag, hf_url(repo, file), "official", MIT, labels,
                   f"{repo} Hugging Face repo ({_UF_SHA}); accuracy: {_UF_README}", pretrain=pretrain,
                   sha256=sha256, top1=top1, reported_by=_UF_README, protocol=protocol, paper=paper, **kw)


_SSV2 = "Something-Something V2 val, {} frames (one per segment), 3 crops x 1 clip, short side 224"
register_weights(
    Weights("uniformer_small_plus", "in1k", hf_url("Sense-X/uniformer_image", "uniformer_small_plus_in1k.pth"),
            "official", MIT, "imagenet-1k", f"{_UF_IMG} ({_UF_SHA}); accuracy: Sense-X/UniFormer "
            "image_classification/README.md", pretrain="ImageNet-1k", top1=83.4,
            reported_by="Sense-X/UniFormer image_classification/README.md",
            sha256="53bc55180eb750f00b12933c75fefb5f9ee652bea606cd26104b738f0c4c472e",
            protocol="ImageNet-1k val, 224, 1 centre crop", paper="Li et al., UniFormer (TPAMI), Table 7 (S-dagger)",
            notes="the head_dim 32 model of the README's first table (the head_dim 64 re-training is published on "
                  "Google Drive only)", default=True),
    _uf_video("uniformer_base_32x4", "k400", "Sense-X/uniformer_video", "uniformer_base_k400_32x4.pth",
              "b432450566cdc4f50222e4851b5d304bba4444a699cdbb43fa529ceb18ae1f8e", 82.9, "kinetics-400",
              "ImageNet-1k, then Kinetics-400", "Kinetics-400 val, 32 frames at stride 4, 1 crop x 4 clips",
              "Li et al., UniFormer, ICLR 2022, Table 2 (UniFormer-B 32x4: 82.9)"),
    _uf_video("uniformer_base_16x4", "k400", "Andy1621/uniformer", "uniformer_base_k400_16x4.pth",
              "a36e08ecff0a2b11020d6e88046353f80fdeb10b40fe167f2fbc0c1d976fb873", 82.0, "kinetics-400",
              "ImageNet-1k, then Kinetics-400", "Kinetics-400 val, 16 frames at stride 4, 1 crop x 4 clips",
              "Li et al., UniFormer, ICLR 2022, Table 2 (UniFormer-B 16x4: 82.0)",
              notes="hosted in the first author's own Hugging Face repo (Andy1621, used by the official demo); "
                    "the README's copy is on Google Drive", default=True),
    _uf_video("uniformer_small_16x4", "ssv2_k600", "Sense-X/uniformer_video", "uniformer_small_sthv2_16_prek600.pth",
              "6b085f96980edf491386893902a5a304a63f4da395d528bcdeef6e7464bd160f", 69.4, "something-something-v2",
              "ImageNet-1k, then Kinetics-600, then Something-Something V2", _SSV2.format(16),
              "Li et al., UniFormer, ICLR 2022, Table 3 (UniFormer-S 16 frames, K600 pre-training: 69.4)",
              notes="16 frames by uniform segment sampling (data.sampling=segment), not 16x4; 174-class head"),
    _uf_video("uniformer_base_32x4", "ssv2_k600", "Sense-X/uniformer_video", "uniformer_base_sthv2_32_prek600.pth",
              "b7a74408ed230e9671d30da2f596bef84900aaaa325a5793f6cb3ba25f721eae", 71.2, "something-something-v2",
              "ImageNet-1k, then Kinetics-600, then Something-Something V2", _SSV2.format(32),
              "Li et al., UniFormer, ICLR 2022, Table 3 (UniFormer-B 32 frames, K600 pre-training: 71.2)",
              notes="32 frames by uniform segment sampling (data.sampling=segment), not 32x4; 174-class head"),
)
