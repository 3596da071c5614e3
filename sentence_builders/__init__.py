"""Sentence builders: each turns Items into VisualSentences with one layout. Registered by name here."""

BUILTIN: dict[str, str] = {
    "single": "sentence_builders.single:SingleBuilder",
    "category": "sentence_builders.category:CategoryBuilder",
}
