"""Sources: each reads one dataset format into `uvd.records.Item`s. Registered by name here."""

BUILTIN: dict[str, str] = {
    "image_folder": "sources.image_folder:ImageFolderSource",
}
