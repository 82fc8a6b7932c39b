"""What the IR refuses, in one place: the error rule and the size limits.

Error rule: an invalid field raises a ValueError naming the field, the value and what is allowed;
a field of the wrong type raises :class:`SpecTypeError`, which is both a TypeError and a
ValueError, so ``except ValueError`` catches every invalid spec and ``except TypeError`` every
wrong type.

Size limits: a spec is refused at construction, before any block is walked, when it has more
than :data:`MAX_BLOCKS` blocks (in total or in one stage); any layer wider than
:data:`MAX_CHANNELS` channels, a classifier with more than :data:`MAX_CLASSES` classes, or a
resolution above :data:`MAX_RESOLUTION` pixels is refused too: such a model would not fit in
memory when built (a 32,768-wide 3x3 conv alone has 9.7 G parameters, 39 GB).
"""

from __future__ import annotations

#: most blocks a network (or one stage) may have; the largest zoo network (ResNet-152) has 50
MAX_BLOCKS = 10_000
#: most channels of any layer (stem, stage, mid, head, hidden, input); the zoo's widest
#: (EfficientNet-L2) has 8,256
MAX_CHANNELS = 16_384
#: most classifier outputs (ImageNet-21k has 21,841 classes)
MAX_CLASSES = 100_000
#: largest input side in pixels (EfficientNet-L2 uses 800)
MAX_RESOLUTION = 8_192


class SpecTypeError(TypeError, ValueError):
    """A spec field of the wrong type: a TypeError and a ValueError (see the module docstring)."""
