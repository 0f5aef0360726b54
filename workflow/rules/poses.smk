rule poses:
    input:
        scene="results/{scene}/scene",
    output:
        directory("results/{scene}/poses"),
    log:
        "logs/poses/{scene}.log",
    benchmark:
        "results/benchmarks/poses/{scene}.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    threads: 4
    params:
        code=stage_digest("poses"),  # the package code the stage runs
        settings=lambda wc: settings_json(PIPELINE.poses_params(wc.scene)),
    shell:
        "python -m maldnerf --threads {threads} poses --scene {input.scene:q} --output {output:q}"
        " --settings {params.settings:q} 2> {log:q}"
