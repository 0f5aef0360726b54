rule evaluate:
    input:
        scene="results/{scene}/scene",
        poses="results/{scene}/poses",
        masks="results/{scene}/masks",
        render="results/{scene}/render/{variant}",
        nerf="results/{scene}/nerf/{variant}",
    output:
        metrics="results/{scene}/metrics/{variant}.json",
        features="results/{scene}/metrics/{variant}.features.npz",
        preview="results/{scene}/metrics/{variant}.preview.png",
    log:
        "logs/evaluate/{scene}-{variant}.log",
    benchmark:
        "results/benchmarks/evaluate/{scene}-{variant}.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    threads: 2
    resources:
        gpu=lambda wc: PIPELINE.evaluate_gpus(wc.scene),  # only with LPIPS/Inception weights
        mem_mb=lambda wc: PIPELINE.resources("evaluate", wc.scene)["mem_mb"],
        runtime=lambda wc: PIPELINE.resources("evaluate", wc.scene)["runtime"],
    params:
        code=stage_digest("evaluate"),  # the package code the stage runs
        settings=lambda wc: settings_json(PIPELINE.evaluate_params(wc.scene)),
    shell:
        "python -m maldnerf --threads {threads} evaluate --scene {input.scene:q}"
        " --transforms {input.poses:q}/transforms.json --masks {input.masks:q} --render {input.render:q} --nerf {input.nerf:q}"
        " --output {output.metrics:q} --settings {params.settings:q} 2> {log:q}"


rule contact_sheet:
    input:
        metrics=get_scene_metrics,
    output:
        report(
            "results/{scene}/contact_sheet.png",
            caption="../report/contact_sheet.rst",
            category="Contact sheets",
            labels={"scene": "{scene}"},
        ),
    log:
        "logs/contact_sheet/{scene}.log",
    conda:
        "../../envs/maldnerf.yaml"
    threads: 1
    params:
        code=stage_digest("contact_sheet"),  # the package code the job runs
        settings=lambda wc: settings_json(PIPELINE.contact_sheet_params()),
    shell:
        "python -m maldnerf --threads {threads} contact-sheet --scene {wildcards.scene:q}"
        " --metrics {input.metrics:q} --output {output:q}"
        " --settings {params.settings:q} 2> {log:q}"


rule table:
    input:
        metrics=get_all_metrics,
        sheets=get_contact_sheets,
    output:
        table=report(
            "results/table.csv",
            caption="../report/table.rst",
            category="Results",
        ),
        per_scene="results/table_per_scene.csv",
        markdown="results/table.md",
        plot=report(
            "results/metrics.png", caption="../report/plot.rst", category="Results"
        ),
        timings="results/timings.csv",
    log:
        "logs/table/table.log",
    benchmark:
        "results/benchmarks/table/table.tsv"
    conda:
        "../../envs/maldnerf.yaml"
    threads: 1
    params:
        code=stage_digest("table"),  # the package code the stage runs
        settings=lambda wc: settings_json(PIPELINE.table_params()),
        variants=lambda wc: settings_json(PIPELINE.table_variants()),
        benchmarks=PIPELINE.benchmark_files(),
    shell:
        "python -m maldnerf --threads {threads} table --metrics {input.metrics:q}"
        " --variants {params.variants:q} --benchmarks {params.benchmarks:q}"
        " --output {output.table:q} --settings {params.settings:q} 2> {log:q}"
