"""Kinds of data, one module each: ``dna`` (:mod:`.dna`), ``image`` (:mod:`.image`) and
``tabular`` (:mod:`.tabular`).

The interface is :mod:`.base` (:class:`~.base.Modality`) with its input/output half in
:mod:`.interface`; sequences are read and written by :mod:`.sequences`, arrays (images,
tables) by :mod:`.arrays`; :mod:`.detect` tells what an input is and :mod:`.registry` finds
a modality by name (built-ins, entry points, ``--backbone``)."""
