from .file_io import write_atomically

__all__ = ["write_atomically"]
