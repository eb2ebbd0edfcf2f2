"""Built-in non-DNA modalities, registered in :mod:`diffaug_genomics.models.registry` on first
use: ``image`` (:mod:`.image`) and ``tabular`` (:mod:`.tabular`)."""
