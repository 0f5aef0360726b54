rule prepare:
    input:
        lambda wc: PIPELINE.source_files(wc.scene),
    output:
        directory("results/{scene}/scene"),
    log:
        "logs/prepare/{scene}.log",
    benchmark:
        "results/benchmarks/prepare/{scene}.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    threads: 2
    params:
        code=stage_digest("prepare"),  # the package code the stage runs
        settings=lambda wc: settings_json(PIPELINE.prepare_params(wc.scene)),
    shell:
        "python -m maldnerf --threads {threads} prepare --name {wildcards.scene:q} --output {output:q}"
        " --settings {params.settings:q} 2> {log:q}"
