//! The `abacus` binary: parses arguments, runs a command, reports errors with the documented exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use abacus::cli::{Cli, Command};
use abacus::run::{RunOptions, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = err
                .downcast_ref::<abacus::Error>()
                .map_or(1, |e| e.exit_code());
            eprintln!("error: {err:#}");
            ExitCode::from(code as u8)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Diff(args) => diff(args),
        Command::Plot(args) => plot(args),
        Command::Explain(args) => explain(args),
        Command::Run(args) => {
            let threads = args
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let opts = RunOptions {
                inputs: args.inputs,
                config: args.config,
                out: args.out.clone(),
                threads,
                overwrite: args.overwrite,
                max_rejected: args.max_rejected,
                skip_corrupt_input: args.skip_corrupt_input,
                progress: !args.quiet && std::io::stderr().is_terminal(),
                checkpoint_dir: args.checkpoint_dir,
                checkpoint_every: args.checkpoint_every.unwrap_or_default(),
                resume: args.resume,
                batch_bytes: args.batch_size,
                memory_limit: args.memory_limit,
            };
            let summary = run(&opts)?;
            if !args.quiet {
                eprint!("{}", summary.table(&args.out));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let max = args
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            let mut threads = vec![1];
            while threads.last().is_some_and(|&t| t * 2 <= max) {
                threads.push(threads.last().map_or(1, |t| t * 2));
            }
            if threads.last() != Some(&max) {
                threads.push(max);
            }
            let tmp;
            let dir = match &args.dir {
                Some(d) => {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("creating {}", d.display()))?;
                    d.clone()
                }
                None => {
                    tmp = tempfile::tempdir().context("creating a temporary directory")?;
                    tmp.path().to_path_buf()
                }
            };
            let report = abacus::bench::run_bench(&dir, args.events, &threads)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            let start = abacus::timefmt::parse_rfc3339(args.start.as_bytes()).ok_or_else(|| {
                abacus::Error::Usage(format!(
                    "--start `{}` is not an RFC 3339 time such as 2024-01-01T00:00:00Z",
                    args.start
                ))
            })?;
            let mut opts =
                abacus::generate::GenerateOptions::new(args.events, args.seed, args.out.clone());
            if let Some(lookup) = args.lookup {
                opts.lookup = lookup;
            }
            opts.users = args.users;
            opts.rate = args.rate;
            opts.start_ms = start;
            let report = abacus::generate::generate(&opts)
                .with_context(|| format!("generating {}", args.out.display()))?;
            eprintln!(
                "wrote {} lines ({} duplicates, {} from skewed clocks, {} years old) to {} ({:.1} MiB in {} frames) and {}",
                report.lines,
                report.duplicates,
                report.skewed,
                report.ancient,
                args.out.display(),
                report.bytes_written as f64 / 1048576.0,
                report.frames,
                opts.lookup.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `abacus explain`: the report goes to stdout.
fn explain(args: abacus::cli::ExplainArgs) -> anyhow::Result<ExitCode> {
    let opts = abacus::audit::explain::ExplainOptions {
        config: args.config,
        inputs: args.inputs,
        sample: args.sample,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    print!("{}", abacus::audit::explain::explain(&opts)?);
    Ok(ExitCode::SUCCESS)
}

/// `abacus plot`: writes the picture, says on stderr what it shows.
fn plot(args: abacus::cli::PlotArgs) -> anyhow::Result<ExitCode> {
    if args.width < 200 || args.height < 150 || args.width > 10_000 || args.height > 10_000 {
        return Err(abacus::Error::Usage(
            "--width and --height must be between 200x150 and 10000x10000 pixels".into(),
        )
        .into());
    }
    let opts = abacus::audit::plot::PlotOptions {
        source: args.source,
        metric: args.metric,
        event_type: args.event_type,
        window: args.window,
        dimension: args.dimension,
        value: args.value,
        top: args.top,
        output: args.output.clone(),
        size: (args.width, args.height),
    };
    let chart = abacus::audit::plot::plot(&opts)?;
    let points: usize = chart.series.iter().map(|s| s.points.len()).sum();
    eprintln!(
        "wrote {}: {} ({} lines, {points} points)",
        args.output.display(),
        chart.title,
        chart.series.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `abacus diff`: the report goes to stdout whatever the outcome; "not equal" is exit code 1.
fn diff(args: abacus::cli::DiffArgs) -> anyhow::Result<ExitCode> {
    use abacus::audit::diff::parse_pairs;
    let opts = abacus::audit::DiffOptions {
        expected: args.expected,
        actual: args.actual,
        map: parse_pairs(&args.map, "--map")?,
        set: parse_pairs(&args.set, "--set")?,
        tolerance: args.tolerance,
        out: args.out,
        top: args.top,
    };
    let report = abacus::audit::diff(&opts)?;
    print!("{}", report.text);
    Ok(if report.equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
