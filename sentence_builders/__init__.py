"""Sentence builders: each turns Items into VisualSentences with one layout. Registered by name here."""

BUILTIN: dict[str, str] = {
    "single": "sentence_builders.single:SingleBuilder",
    "video": "sentence_builders.video:VideoClipBuilder", "interleaved": "sentence_builders.annotated_video:InterleavedBuilder", "grouped": "sentence_builders.annotated_video:GroupedBuilder",
    "multiview": "sentence_builders.multiview:MultiviewBuilder",
    "category": "sentence_builders.category:CategoryBuilder",
    "pairs": "sentence_builders.pairs:PairsBuilder",
    "tuple": "sentence_builders.tuple:TupleBuilder",
    "multitask": "sentence_builders.multitask:MultitaskBuilder",
}
