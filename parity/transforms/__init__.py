"""Post-export transforms of the artifact (fp16 conversion, INT8 quantization), each with its config dataclass.

A transform takes the exported artifact and writes a new one beside it; the backend runs the new one, and the
export record carries both: the original's path/SHA-256/size and, under `transform`, the transformed one's.
The classes are also reachable here, as `parity.transforms.<Class>`, the `_target_` paths of earlier releases.
"""

from parity.transforms.base import NoTransform, Transform
from parity.transforms.float16 import Float16Transform
from parity.transforms.quantize import DynamicQuantizeTransform, StaticQuantizeTransform

__all__ = ["DynamicQuantizeTransform", "Float16Transform", "NoTransform", "StaticQuantizeTransform", "Transform"]
