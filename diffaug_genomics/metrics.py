"""The columns of a run's ``metrics.csv``: the one home of its schema, for the training loop
that writes it (:mod:`diffaug_genomics.train.loop`) and the report that reads it
(:mod:`diffaug_genomics.report`). Imports nothing heavy.

Step rows fill ``loss``, ``lr`` and ``samples_per_s``; diagnostic rows
(:mod:`diffaug_genomics.diagnostics`) leave ``loss`` empty and fill ``eff_rank`` /
``eff_rank_pooled`` (phase ``init`` before training, then after every warm-up and encoder
epoch; at the start and a stage's last epoch also the other criteria of the exported state,
``uniformity``, ``nbr_agreement`` and ``feature_agreement``) or ``cond_gain`` (after every generator unit); ``bank`` rows (loss = fraction of the bank
changed since the previous round) also fill the three ``pos_*`` columns where the modality has
them. Files written before the diagnostics existed have only :data:`BASE_FIELDS`.
"""

BASE_FIELDS = ["time_s", "phase", "round", "epoch", "step", "loss", "lr", "samples_per_s"]
DIAGNOSTIC_FIELDS = ["eff_rank", "eff_rank_pooled", "cond_gain", "pos_identity_source",
                     "pos_identity_nearest", "pos_kmer3_l1", "uniformity", "nbr_agreement",
                     "feature_agreement"]
METRIC_FIELDS = BASE_FIELDS + DIAGNOSTIC_FIELDS
