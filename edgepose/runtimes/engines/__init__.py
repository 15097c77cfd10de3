"""The engines, one module each; importing this package registers every module found in it.

No module imports its engine library at import time: that happens in the runtime's ``_load``.
"""

from ...plugins import import_submodules

import_submodules(__name__, __path__)
