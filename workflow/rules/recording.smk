# Stage 2: the V1 recording in the documented format (neurobias.neural.recording).


rule simulate_recording:
    output:
        "results/neural/{recording}/recording.npz",
    params:
        cfg=lambda wc: config["recordings"][wc.recording],
    log:
        "logs/simulate_recording/{recording}.log",
    threads: 1
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/simulate_recording.py"
