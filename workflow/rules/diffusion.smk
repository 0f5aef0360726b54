rule pretrain:
    output:
        directory(PRETRAINED_TINY),
    log:
        "logs/pretrain/tiny.log",
    benchmark:
        "results/benchmarks/pretrain/tiny.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    threads: 8  # rooms render in parallel processes; capped by --cores
    params:
        code=stage_digest("pretrain"),  # the package code the stage runs
        settings=settings_json(PIPELINE.pretrain_params()),
    shell:
        "python -m maldnerf --threads {threads} pretrain --output {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule customize:
    input:
        unpack(get_customize_input),
    output:
        directory("results/{scene}/diffusion/{customization}"),
    log:
        "logs/customize/{scene}-{customization}.log",
    benchmark:
        "results/benchmarks/customize/{scene}-{customization}.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=lambda wc: PIPELINE.resources("customize", wc.scene)["mem_mb"],
        runtime=lambda wc: PIPELINE.resources("customize", wc.scene)["runtime"],
    params:
        code=stage_digest("customize"),  # the package code the stage runs
        settings=lambda wc: settings_json(
            PIPELINE.customize_params(wc.scene, wc.customization)
        ),
        resume="results/{scene}/.resume/customize-{customization}",
    shell:
        "python -m maldnerf --threads {threads} customize"
        " --transforms {input.poses:q}/transforms.json --masks {input.masks:q}"
        " --output {output:q} --resume-dir {params.resume:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule inpaint:
    input:
        unpack(get_inpaint_input),
    output:
        directory("results/{scene}/inpaint/{customization}"),
    log:
        "logs/inpaint/{scene}-{customization}.log",
    benchmark:
        "results/benchmarks/inpaint/{scene}-{customization}.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=lambda wc: PIPELINE.resources("inpaint", wc.scene)["mem_mb"],
        runtime=lambda wc: PIPELINE.resources("inpaint", wc.scene)["runtime"],
    params:
        code=stage_digest("inpaint"),  # the package code the stage runs
        settings=lambda wc: settings_json(PIPELINE.inpaint_params(wc.scene)),
        customization=get_customization_dir,
    shell:
        "python -m maldnerf --threads {threads} inpaint"
        " --transforms {input.poses:q}/transforms.json --masks {input.masks:q}"
        " --customization {params.customization:q} --output {output:q}"
        " --settings {params.settings:q} 2> {log:q}"
