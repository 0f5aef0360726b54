rule train:
    input:
        unpack(get_train_input),
    output:
        directory("results/{scene}/nerf/{variant}"),
    log:
        "logs/train/{scene}-{variant}.log",
    benchmark:
        "results/benchmarks/train/{scene}-{variant}.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    # One thread: on a CPU, variants then train side by side (on 2 cores two 1-thread jobs do
    # 1.5x the work of one 2-thread job). More per job: --set-threads train=N.
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wc: PIPELINE.resources("train", wc.scene, wc.variant)["mem_mb"],
        runtime=lambda wc: PIPELINE.resources("train", wc.scene, wc.variant)["runtime"],
    params:
        code=stage_digest("train"),  # the package code the stage runs
        settings=lambda wc: settings_json(PIPELINE.train_params(wc.scene, wc.variant)),
        customization=get_customization_dir,
        resume="results/{scene}/.resume/train-{variant}",
    shell:
        "python -m maldnerf --threads {threads} train"
        " --transforms {input.poses:q}/transforms.json --masks {input.masks:q}"
        " --targets {input.targets:q} --customization {params.customization:q}"
        " --output {output:q} --resume-dir {params.resume:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule render:
    input:
        poses="results/{scene}/poses",
        nerf="results/{scene}/nerf/{variant}",
    output:
        directory("results/{scene}/render/{variant}"),
    log:
        "logs/render/{scene}-{variant}.log",
    benchmark:
        "results/benchmarks/render/{scene}-{variant}.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    threads: 1  # as train: variants render side by side
    resources:
        gpu=1,
        mem_mb=lambda wc: PIPELINE.resources("render", wc.scene)["mem_mb"],
        runtime=lambda wc: PIPELINE.resources("render", wc.scene)["runtime"],
    params:
        code=stage_digest("render"),  # the package code the stage runs
        settings=lambda wc: settings_json(PIPELINE.render_params(wc.scene)),
    shell:
        "python -m maldnerf --threads {threads} render"
        " --transforms {input.poses:q}/transforms.json --nerf {input.nerf:q}"
        " --output {output:q} --settings {params.settings:q} 2> {log:q}"
