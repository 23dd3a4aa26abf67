"""What the schema check cannot see in deploy/k8s/*.yaml, and a local run of the pods' commands.

    python check-jobs.py DIR [BINARY]

Checks (the Kubernetes schemas leave enums such as completionMode as free strings):
  - the Indexed Job: completionMode Indexed, parallelism <= completions, restartPolicy Never,
    its command runs `--shard "$JOB_COMPLETION_INDEX/N"` with N == completions and writes
    --out "<results mount>/part-$JOB_COMPLETION_INDEX.json";
  - the merge Job and the Indexed Job mount the claim that a PersistentVolumeClaim in DIR
    defines, ReadWriteMany.
With BINARY (udprange), it then runs what the pods run, as the Job controller would (sh -c,
JOB_COMPLETION_INDEX=0..N-1, workingDir), on this machine: each volume is a temporary
directory (the mount paths in the commands are rewritten to it), the scenario ConfigMap is
filled as the `kubectl create configmap` line in the manifest's comments says, and `udprange`
on PATH is BINARY. The merge Job's JSON must equal one whole run, byte for byte.
Needs PyYAML (validate.sh runs it in the venv of kubernetes-validate, which depends on it).
"""

import glob
import os
import re
import subprocess
import sys
import tempfile

import yaml


def fail(message):
    print(f"check-jobs: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def load(directory):
    docs = []
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, text, doc))
    return docs


def container(job):
    containers = job["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        fail(f"job/{job['metadata']['name']}: expected one container, found {len(containers)}")
    return containers[0]


def script(job):
    c = container(job)
    words = c.get("command", []) + c.get("args", [])
    if words[:2] != ["sh", "-c"] or len(words) != 3:
        fail(f"job/{job['metadata']['name']}: expected command [sh, -c] and one script in args")
    return words[2]


def claims(job):
    """mountPath -> claimName for the job's PVC mounts, and mountPath -> volume for all."""
    spec = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {}
    for m in container(job).get("volumeMounts", []):
        if m["name"] not in volumes:
            fail(f"job/{job['metadata']['name']}: volumeMount {m['name']} has no volume")
        mounts[m["mountPath"]] = volumes[m["name"]]
    return mounts


def main():
    if len(sys.argv) not in (2, 3):
        fail("usage: check-jobs.py DIR [BINARY]")
    directory = sys.argv[1]
    docs = load(directory)
    pvcs = {d["metadata"]["name"]: d for _, _, d in docs if d.get("kind") == "PersistentVolumeClaim"}
    jobs = [(p, t, d) for p, t, d in docs if d.get("kind") == "Job"]
    indexed = [(p, t, d) for p, t, d in jobs if "completions" in d["spec"] and d["spec"]["completions"] > 1]
    others = [(p, t, d) for p, t, d in jobs if (p, t, d) not in indexed]
    if len(indexed) != 1 or len(others) != 1:
        fail(f"expected one Job with completions > 1 and one merge Job in {directory}")
    sim_path, sim_text, sim = indexed[0]
    merge = others[0][2]
    name = f"job/{sim['metadata']['name']}"

    spec = sim["spec"]
    if spec.get("completionMode") != "Indexed":
        fail(f"{name}: completionMode is {spec.get('completionMode')!r}, not 'Indexed'")
    completions = spec["completions"]
    if not 1 <= spec.get("parallelism", 1) <= completions:
        fail(f"{name}: parallelism {spec.get('parallelism')} is not within 1..{completions}")
    if spec["template"]["spec"].get("restartPolicy") != "Never":
        fail(f"{name}: restartPolicy must be Never (backoffLimitPerIndex needs it)")
    sim_script = script(sim)
    shard = re.search(r'--shard "\$JOB_COMPLETION_INDEX/(\d+)"', sim_script)
    if not shard or int(shard.group(1)) != completions:
        fail(f'{name}: the command must run --shard "$JOB_COMPLETION_INDEX/{completions}": {sim_script}')
    replications = re.search(r"--replications (\d+)", sim_script)
    if not replications:
        fail(f"{name}: no --replications in the command")

    sim_mounts, merge_mounts = claims(sim), claims(merge)
    for job, mounts in ((sim, sim_mounts), (merge, merge_mounts)):
        pvc = [(path, v["persistentVolumeClaim"]["claimName"]) for path, v in mounts.items() if "persistentVolumeClaim" in v]
        if len(pvc) != 1:
            fail(f"job/{job['metadata']['name']}: expected one persistentVolumeClaim mount")
        path, claim = pvc[0]
        if claim not in pvcs:
            fail(f"job/{job['metadata']['name']}: claim {claim} is not defined in {directory}")
        if "ReadWriteMany" not in pvcs[claim]["spec"]["accessModes"]:
            fail(f"persistentvolumeclaim/{claim}: pods on several nodes need ReadWriteMany")
        if job is sim:
            results = path
            if f'--out "{path}/part-$JOB_COMPLETION_INDEX.json"' not in sim_script:
                fail(f'{name}: the command must write --out "{path}/part-$JOB_COMPLETION_INDEX.json"')
    print(f"check-jobs: {name}: Indexed, {completions} completions = --shard I/{completions}, "
          f"{replications.group(1)} replications, parts on the shared claim at {results}")
    if len(sys.argv) == 2:
        return

    binary = os.path.realpath(sys.argv[2])
    repo = os.path.realpath(os.path.join(directory, "..", ".."))
    with tempfile.TemporaryDirectory(prefix="udprange-k8s-") as tmp:
        os.makedirs(os.path.join(tmp, "bin"))
        os.symlink(binary, os.path.join(tmp, "bin", "udprange"))
        env = dict(os.environ, PATH=os.path.join(tmp, "bin") + os.pathsep + os.environ["PATH"])

        def local(mounts):
            """mountPath -> the temporary directory that stands for its volume."""
            paths = {}
            for path, volume in mounts.items():
                if "persistentVolumeClaim" in volume:
                    local_path = os.path.join(tmp, "pvc-" + volume["persistentVolumeClaim"]["claimName"])
                elif "configMap" in volume:
                    cm = volume["configMap"]["name"]
                    local_path = os.path.join(tmp, "configmap-" + cm)
                    made = re.search(rf"kubectl create configmap {cm} --from-file=(\S+)=(\S+)", sim_text)
                    if not made:
                        fail(f"{sim_path}: no `kubectl create configmap {cm} --from-file=KEY=PATH` in its comments")
                    os.makedirs(local_path, exist_ok=True)
                    with open(os.path.join(repo, made.group(2)), "rb") as src:
                        data = src.read()
                    with open(os.path.join(local_path, made.group(1)), "wb") as dst:
                        dst.write(data)
                else:
                    fail(f"no local stand-in for volume {volume}")
                os.makedirs(local_path, exist_ok=True)
                paths[path] = local_path
            return paths

        def run(job, paths, index=None):
            text = script(job)
            workdir = container(job).get("workingDir", "/")
            for path, local_path in paths.items():
                text = text.replace(path, local_path)
                workdir = workdir.replace(path, local_path)
            job_env = dict(env) if index is None else dict(env, JOB_COMPLETION_INDEX=str(index))
            done = subprocess.run(["sh", "-c", text], cwd=workdir, env=job_env, capture_output=True, text=True)
            if done.returncode != 0:
                fail(f"job/{job['metadata']['name']} (index {index}): sh -c {text!r} exited {done.returncode}: {done.stderr}")
            return done.stdout, workdir

        sim_paths = local(sim_mounts)
        for index in range(completions):
            _, workdir = run(sim, sim_paths, index)
        report, _ = run(merge, local(merge_mounts))
        outputs = re.findall(r"> (\S+\.json)", script(merge))
        if len(outputs) != 1:
            fail(f"job/{merge['metadata']['name']}: expected one `> FILE.json` in its command")
        merged_path = outputs[0]
        for path, local_path in local(merge_mounts).items():
            merged_path = merged_path.replace(path, local_path)
        scenario = re.search(r"udprange simulate (\S+)", sim_script).group(1)
        whole = subprocess.run(
            ["udprange", "simulate", scenario, "--replications", replications.group(1), "--format", "json"],
            cwd=workdir, env=env, capture_output=True, check=True).stdout
        with open(merged_path, "rb") as f:
            merged = f.read()
        # The first three keys are each run's provenance (version, command line, start
        # time), one line each; the result after them must be the same byte for byte.
        def result(json_bytes):
            lines = json_bytes.split(b"\n")
            if not lines[1].startswith(b'  "udprange_version": '):
                fail("a report without its provenance")
            return b"\n".join(lines[:1] + lines[4:])
        merged, whole = result(merged), result(whole)
        if merged != whole:
            fail(f"the merge of the {completions} parts differs from one whole run")
        print(f"check-jobs: ran the {completions} pods' command and the merge here: "
              f"merge == whole run byte for byte after the provenance ({len(merged)} bytes); report starts: "
              f"{report.splitlines()[0] if report else '(empty)'}")


if __name__ == "__main__":
    main()
