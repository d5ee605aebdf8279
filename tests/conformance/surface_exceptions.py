"""Classic 2.18 names the surface check may still report, each with its reason.

Two kinds, and nothing else: names whose work belongs to another open issue (the number
says which), and names of this issue (#17) not landed yet. A deliberate difference from
classic would be listed in MIGRATING.md's table instead; there is none in the surface today.
Entries are prefixes of "where: name" as check_surface.py prints them.
"""

OTHER_ISSUES: dict[str, str] = {
    "transformer_lens.evals:": "#18 (the classic toolbox: evals)",
    "transformer_lens.head_detector:": "#18 (head_detector)",
    "transformer_lens.SVDInterpreter:": "#18 (SVDInterpreter)",
    "transformer_lens.train:": "#18 (train)",
    "HookedTransformer (class): load_sample_training_dataset": "#18 (training datasets)",
    "HookedTransformer (class): sample_datapoint": "#18 (training datasets)",
    "transformer_lens (exports): evals": "#18",
    "transformer_lens (exports): head_detector": "#18",
    "transformer_lens (exports): SVDInterpreter": "#18",
    "transformer_lens (exports): train": "#18",
    "transformer_lens.utilities.devices:": "the issue on models larger than one device",
    "transformer_lens.HookedEncoder:": "#22 (encoders)",
    "transformer_lens.HookedEncoderDecoder:": "#22",
    "transformer_lens.HookedAudioEncoder:": "#22",
    "transformer_lens.BertNextSentencePrediction:": "#22",
    "transformer_lens (exports): HookedEncoder": "#22",
    "transformer_lens (exports): HookedEncoderDecoder": "#22",
    "transformer_lens (exports): HookedAudioEncoder": "#22",
    "transformer_lens (exports): BertNextSentencePrediction": "#22",
    "transformer_lens.components.bert_": "#22",
    "transformer_lens.components.t5_": "#22",
    "transformer_lens.components.token_typed_embed:": "#22",
    "transformer_lens.pretrained.weight_conversions.bert:": "#22",
    "transformer_lens.pretrained.weight_conversions.t5:": "#22",
    "transformer_lens.pretrained.weight_conversions.hubert:": "#22",
    "transformer_lens.components.mlps.gpt_oss_moe:": "#21 (gpt-oss)",
    "transformer_lens.pretrained.weight_conversions.mixtral:": "#21",
    "transformer_lens.pretrained.weight_conversions.openai:": "#21 (gpt-oss)",
    "transformer_lens.pretrained.weight_conversions.bloom:": "#20 (new families)",
    "transformer_lens.pretrained.weight_conversions.gptj:": "#20",
    "transformer_lens.pretrained.weight_conversions.neo:": "#20",
    "transformer_lens.pretrained.weight_conversions.opt:": "#20",
    "transformer_lens.pretrained.weight_conversions.phi:": "#20",
    "transformer_lens.pretrained.weight_conversions.qwen:": "#20",
    "transformer_lens.pretrained.weight_conversions.coder:": "#20",
    "transformer_lens.pretrained.weight_conversions.mingpt:": "#20",
    "transformer_lens.pretrained.weight_conversions.nanogpt:": "#20",
    "transformer_lens.pretrained.weight_conversions.neel_solu_old:": "#20",
    "transformer_lens.pretrained.weight_conversions.apertus:": "#20",
}

# Issue #17's own names still to land (the issue stays open while this is not empty).
NOT_YET: dict[str, str] = {}
