"""Measurement tools, kept out of the library's import path (nothing in llm_tiny imports them).

python -m llm_tiny.bench CONFIG ...            model: train / infer / generate tokens/s, memory, MFU
python -m llm_tiny.bench.tokenizer ...         tokenizer: ours vs HF tokenizers and tiktoken
python -m llm_tiny.bench.prepare ...           prepare: MB/s and peak memory per worker count
python -m llm_tiny.bench.memory -- CMD ...     peak RSS/PSS of a command's whole process tree
python -m llm_tiny.bench.references JOB ...    one side's job (ours, HF, tiktoken) in a process of its own

The model benchmark by concern: model (build, time, measure), options (command line, settings),
report (table, notes, report file), peak (the peak FLOP/s behind MFU).
"""
