# Stage 2: the V1 recording in the documented format (neurobias.neural.recording), built by its
# declared source (neurobias.neural): simulated, converted from a verified download (Cadena et al.
# 2019), or read from the user's own file (the documented npz, or an NWB file).


rule make_recording:
    input:
        archive=lambda wc: archive_of("recordings", wc.recording),
    output:
        recording="results/neural/{recording}/recording.npz",
    params:
        name="{recording}",
        # the V1 model's settings are fit_v1_model's: changing them keeps the recording
        recording_cfg=lambda wc: {k: v for k, v in config["recordings"][wc.recording].items() if k != "v1_model"},
    log:
        "logs/make_recording/{recording}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["data"]
    script:
        JOB_SCRIPT
