"""Released checkpoint formats of the seeds, read by ``gemfactory import --from FORMAT``.

One module per format; each registers a :class:`~gemfactory.formats.base.SeedFormat` subclass
under its exact name with ``@FORMATS.register(name)``.
"""
from ..registry import Registry

FORMATS = Registry("import format", "formats", "gemfactory.import_formats")
