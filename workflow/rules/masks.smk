rule masks:
    input:
        scene="results/{scene}/scene",
        poses="results/{scene}/poses",
    output:
        directory("results/{scene}/masks"),
    log:
        "logs/masks/{scene}.log",
    benchmark:
        "results/benchmarks/masks/{scene}.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    threads: 1
    params:
        code=stage_digest("masks"),  # the package code the stage runs
        settings=lambda wc: settings_json(PIPELINE.masks_params(wc.scene)),
    shell:
        "python -m maldnerf --threads {threads} masks --scene {input.scene:q} --transforms {input.poses:q}/transforms.json"
        " --output {output:q} --settings {params.settings:q} 2> {log:q}"
