from .file_io import write_atomically, write_bytes_atomically, write_text_atomically

__all__ = ["write_atomically", "write_bytes_atomically", "write_text_atomically"]
