# Stage 2: the V1 recording in the documented format (neurobias.neural.recording): simulated,
# or converted from a verified download (Cadena et al. 2019).


rule make_recording:
    input:
        archive=lambda wc: archive_of(config["recordings"][wc.recording]),
    output:
        "results/neural/{recording}/recording.npz",
    params:
        cfg=lambda wc: config["recordings"][wc.recording],
    log:
        "logs/make_recording/{recording}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/make_recording.py"
