import Foundation
import Glibc
import Testing

/// The packages `scripts/package` builds, made once from the debug binary for all the tests
/// below, in .build/packaging-tests (no release build in the test suite: the debug binary links the Swift runtime from the
/// toolchain, which `--allow-toolchain-libs` accepts, and which the overlay below still sees).
struct BuiltPackages: Sendable {
    let directory: String
    let deb: String
    let tarball: String
}

let builtPackages: Result<BuiltPackages, HarnessError> = {
    // One fixed place, emptied at each run: the packages are large (the debug binary).
    let directory = packageRoot.appendingPathComponent(".build/packaging-tests").path
    try? FileManager.default.removeItem(atPath: directory)
    do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
        return .failure(HarnessError("cannot create \(directory): \(error)"))
    }
    let script = packageRoot.appendingPathComponent("scripts/package").path
    guard let r = try? run(script, ["--binary", switchyardBinary, "--allow-toolchain-libs", "--fast", "--out", directory]) else {
        return .failure(HarnessError("cannot run \(script)"))
    }
    guard r.status == 0 else { return .failure(HarnessError("scripts/package failed (\(r.status)):\n\(r.error)")) }
    let lines = r.output.split(separator: "\n").map(String.init)
    guard let deb = lines.first(where: { $0.hasSuffix(".deb") }), let tarball = lines.first(where: { $0.hasSuffix(".tar.gz") }) else {
        return .failure(HarnessError("scripts/package named no .deb and .tar.gz: \(r.output)"))
    }
    return .success(BuiltPackages(directory: directory, deb: deb, tarball: tarball))
}()

/// Runs `command` and requires it to succeed, returning its standard output.
@discardableResult
func mustRun(_ executable: String, _ arguments: [String]) throws -> String {
    let r = try run(executable, arguments)
    guard r.status == 0 else {
        throw HarnessError("\(executable) \(arguments.joined(separator: " ")) exited \(r.status):\n\(r.output)\n\(r.error)")
    }
    return r.output
}

/// A throwaway copy of this machine to install packages into: an overlay whose lower layer is
/// the root file system (read-only) and whose upper layer is a scratch directory, mounted in a
/// mount namespace of its own and entered with chroot. dpkg, adduser and the package's files
/// change only the upper layer; the machine's own /etc, /usr and dpkg database stay untouched.
/// The network namespace is the machine's, so a proxy started inside serves on its loopback.
final class OverlayMachine {
    let directory = makeTemporaryDirectory()
    var root: String { "\(directory)/merged" }
    var upper: String { "\(directory)/upper" }
    private let holder: ManagedProcess

    /// - Parameter share: a host directory shown inside at /mnt/share.
    init(share: String) throws {
        let directory = self.directory
        for d in ["upper", "work", "merged"] { try FileManager.default.createDirectory(atPath: "\(directory)/\(d)", withIntermediateDirectories: true) }
        let m = "\(directory)/merged"
        let script = """
            set -e
            mount -t overlay overlay -o lowerdir=/,upperdir=\(directory)/upper,workdir=\(directory)/work \(m)
            mount --rbind /proc \(m)/proc; mount --rbind /dev \(m)/dev; mount --rbind /sys \(m)/sys
            mount -t tmpfs tmpfs \(m)/run; mount -t tmpfs tmpfs \(m)/tmp
            mkdir -p \(m)/mnt/share; mount --bind \(share) \(m)/mnt/share
            touch \(directory)/mounted
            exec sleep 100000
            """
        holder = try ManagedProcess(executable: "/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", script],
                                    directory: directory, label: "overlay")
        let end = Date().addingTimeInterval(15)
        while !FileManager.default.fileExists(atPath: "\(directory)/mounted") {
            guard holder.isRunning, Date() < end else { throw HarnessError("cannot mount the overlay (needs root): \(holder.stderr)") }
            usleep(10_000)
        }
    }

    /// The command that runs `arguments` inside (exec'd: its PID is the program's).
    func command(_ arguments: [String]) -> [String] {
        ["--target", "\(holder.pid)", "--mount", "--", "/usr/sbin/chroot", root] + arguments
    }

    /// Runs a shell script inside as root.
    func shell(_ script: String) throws -> (status: Int32, output: String, error: String) {
        try run("/usr/bin/nsenter", command(["/bin/sh", "-c", script]))
    }

    /// Runs a shell script inside as root and requires it to succeed.
    @discardableResult
    func mustShell(_ script: String) throws -> String {
        let r = try shell(script)
        guard r.status == 0 else { throw HarnessError("inside the overlay, `\(script)` exited \(r.status):\n\(r.output)\n\(r.error)") }
        return r.output
    }

    /// Whether a path exists inside.
    func exists(_ path: String) throws -> Bool { try shell("test -e \(path) || test -L \(path)").status == 0 }

    deinit {
        holder.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

@Suite("Packaging: the .deb and the release tarball", .serialized)
struct PackagingTests {
    func packages() throws -> BuiltPackages { try builtPackages.get() }

    @Test("the .deb holds the binary, the conffiles, the hardened unit, logrotate and the copyright with the right modes, Depends and scripts")
    func debContents() throws {
        let deb = try packages().deb
        let listing = try mustRun("/usr/bin/dpkg-deb", ["-c", deb])
        let entries = listing.split(separator: "\n").map { line -> (mode: String, owner: String, path: String) in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            return (String(f.first ?? ""), f.count > 1 ? String(f[1]) : "", String(f.last ?? ""))
        }
        func entry(_ path: String) -> (mode: String, owner: String, path: String)? { entries.first { $0.path == path } }
        let expected: [(String, String)] = [
            ("./usr/bin/switchyard", "-rwxr-xr-x"),
            ("./etc/switchyard/switchyard.yaml", "-rw-r--r--"),
            ("./etc/logrotate.d/switchyard", "-rw-r--r--"),
            ("./lib/systemd/system/switchyard.service", "-rw-r--r--"),
            ("./usr/share/doc/switchyard/copyright", "-rw-r--r--"),
            ("./usr/share/doc/switchyard/install.md", "-rw-r--r--"),
            ("./usr/share/doc/switchyard/examples/example.yaml", "-rw-r--r--"),
        ]
        for (path, mode) in expected {
            let e = entry(path)
            #expect(e?.mode == mode, "\(path): \(String(describing: e)) in\n\(listing)")
            #expect(e?.owner == "root/root", "\(path) must belong to root")
        }
        // The man page and completions come with the package whenever the tree has them.
        let root = packageRoot.path
        if FileManager.default.fileExists(atPath: "\(root)/share/man/man1/switchyard.1") {
            #expect(entry("./usr/share/man/man1/switchyard.1.gz") != nil, "the man page is missing:\n\(listing)")
        } else {
            #expect(!listing.contains("/usr/share/man/"), "a man page without share/man/man1/switchyard.1")
        }

        let control = try mustRun("/usr/bin/dpkg-deb", ["-f", deb])
        func field(_ name: String) -> String {
            control.split(separator: "\n").first { $0.hasPrefix("\(name): ") }.map { String($0.dropFirst(name.count + 2)) } ?? ""
        }
        #expect(field("Package") == "switchyard")
        let printed = try mustRun(switchyardBinary, ["version"]).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(printed.hasPrefix("switchyard "), "switchyard version printed \(printed)")
        let binaryVersion = String(printed.dropFirst("switchyard ".count))
        #expect(field("Version") == binaryVersion || field("Version").hasPrefix("\(binaryVersion)+git"),
                "Version \(field("Version")) is not the binary's \(binaryVersion)")
        let depends = field("Depends")
        for library in ["libevent-core-2.1-7", "libssl3", "libc6", "libsqlite3-0", "adduser"] {
            #expect(depends.contains(library), "Depends lacks \(library): \(depends)")
        }
        #expect(depends.contains("libc6 (>="), "Depends has no versions (dpkg-shlibdeps): \(depends)")

        let extracted = try packages().directory + "/control"
        try mustRun("/usr/bin/dpkg-deb", ["-e", deb, extracted])
        let conffiles = try String(contentsOfFile: "\(extracted)/conffiles", encoding: .utf8)
        #expect(conffiles.split(separator: "\n").sorted() == ["/etc/logrotate.d/switchyard", "/etc/switchyard/switchyard.yaml"])
        for script in ["postinst", "prerm", "postrm"] {
            let path = "\(extracted)/\(script)"
            #expect(try mustRun("/usr/bin/stat", ["-c", "%a", path]) == "755\n", "\(script) must be executable")
            try mustRun("/bin/sh", ["-n", path])
        }
        let postinst = try String(contentsOfFile: "\(extracted)/postinst", encoding: .utf8)
        #expect(postinst.contains("adduser --system") && postinst.contains("useradd --system"))

        let files = try packages().directory + "/files"
        try mustRun("/usr/bin/dpkg-deb", ["-x", deb, files])
        let unit = try String(contentsOfFile: "\(files)/lib/systemd/system/switchyard.service", encoding: .utf8)
        for line in ["User=switchyard", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                     "ReadWritePaths=/var/lib/switchyard /var/log/switchyard", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                     "AmbientCapabilities=CAP_NET_BIND_SERVICE", "Type=notify", "NotifyAccess=all",
                     "ExecStartPre=/usr/bin/switchyard check --config /etc/switchyard/switchyard.yaml",
                     "ExecStart=/usr/bin/switchyard run --config /etc/switchyard/switchyard.yaml",
                     "ExecReload=/usr/bin/switchyard check --config /etc/switchyard/switchyard.yaml",
                     "ExecReload=/bin/kill -HUP $MAINPID"] {
            #expect(unit.split(separator: "\n").contains(Substring(line)), "the unit lacks \(line)")
        }
        #expect(!unit.split(separator: "\n").contains { $0.hasPrefix("Exec") && $0.contains("/usr/local/bin") },
                "the packaged unit must run /usr/bin/switchyard")
        let logrotate = try String(contentsOfFile: "\(files)/etc/logrotate.d/switchyard", encoding: .utf8)
        #expect(logrotate.contains("/var/log/switchyard/*.log") && logrotate.contains("-s USR1"))
        let copyright = try String(contentsOfFile: "\(files)/usr/share/doc/switchyard/copyright", encoding: .utf8)
        for text in ["libevent, BSD-3-Clause", "OpenSSL, Apache-2.0", "GNU C library", "Swift package yams", "Swift package swift-nio",
                     "Permission is hereby granted"] {
            #expect(copyright.contains(text), "the copyright file lacks \(text)")
        }
        // The packaged default configuration is valid as shipped.
        let check = try run(switchyardBinary, ["check", "--config", "\(files)/etc/switchyard/switchyard.yaml"])
        #expect(check.status == 0, "the packaged configuration is invalid: \(check.output)\(check.error)")
    }

    @Test("scripts/package refuses a binary that links the Swift runtime dynamically unless told it is for tests")
    func refusesToolchainLinkedBinary() throws {
        let ldd = try mustRun("/usr/bin/ldd", [switchyardBinary])
        #expect(ldd.contains("libswiftCore.so"), "the debug build is expected to link the Swift runtime dynamically:\n\(ldd)")
        let out = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try run(packageRoot.appendingPathComponent("scripts/package").path, ["--binary", switchyardBinary, "--deb-only", "--out", out])
        #expect(r.status == 1)
        #expect(r.error.contains("libswiftCore.so") && r.error.contains("--static-swift-stdlib"), "\(r.error)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).isEmpty, "a package was written anyway")
    }

    @Test("the .deb installs into a copy of this machine, runs as the switchyard user with its config, rotates its log, and purges clean")
    func installRunPurge() throws {
        let built = try packages()
        let machine = try OverlayMachine(share: built.directory)
        let deb = "/mnt/share/" + URL(fileURLWithPath: built.deb).lastPathComponent
        #expect(try !machine.exists("/usr/bin/switchyard"), "the overlay must start without Switchyard installed")

        let install = try machine.shell("dpkg -i \(deb)")
        #expect(install.status == 0, "dpkg -i failed:\n\(install.output)\n\(install.error)")
        try machine.mustShell("dpkg-query -W -f='${Status}' switchyard | grep -qx 'install ok installed'")
        #expect(try machine.exists("/etc/systemd/system/multi-user.target.wants/switchyard.service"), "the service is not enabled")
        // The system user, without a login shell, and its directories.
        let user = try machine.mustShell("getent passwd switchyard")
        #expect(user.hasPrefix("switchyard:x:") && user.contains(":/var/lib/switchyard:") && user.contains("nologin"), "\(user)")
        #expect(try machine.mustShell("id -u switchyard").trimmingCharacters(in: .whitespacesAndNewlines) != "0")
        for dir in ["/var/lib/switchyard", "/var/log/switchyard"] {
            #expect(try machine.mustShell("stat -c '%U:%G %a' \(dir)") == "switchyard:switchyard 750\n", "\(dir)")
        }
        // The unit as systemd reads it (the man page check needs man-db; the unit names man:switchyard(1)).
        let verify = try machine.shell("systemd-analyze verify --man=no /lib/systemd/system/switchyard.service")
        #expect(verify.status == 0 && verify.error.isEmpty, "systemd-analyze verify: \(verify.output)\(verify.error)")
        // The shipped configuration passes `switchyard check` as the service user (ExecStartPre).
        try machine.mustShell("setpriv --reuid=switchyard --regid=switchyard --init-groups switchyard check --config /etc/switchyard/switchyard.yaml")

        // Point the installed configuration at a demo app and a free port, as an operator edits it.
        let scenario = Scenario()
        let app = try scenario.upstream("app-1")
        try machine.mustShell("""
            sed -i -e 's|"\\*:80"|127.0.0.1:0|' -e 's|127.0.0.1:8000|\(app.address)|' /etc/switchyard/switchyard.yaml
            grep -q '127.0.0.1:0' /etc/switchyard/switchyard.yaml
            """)
        // What systemd does before ExecStart: /run/switchyard (RuntimeDirectory) for the user.
        try machine.mustShell("install -d -o switchyard -g switchyard -m 0750 /run/switchyard")
        // The unit's user, capabilities and no-new-privileges, without systemd (not running here).
        let proxy = try ManagedProcess(executable: "/usr/bin/nsenter", machine.command([
            "/usr/bin/setpriv", "--reuid=switchyard", "--regid=switchyard", "--init-groups", "--no-new-privs",
            "--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service", "--bounding-set=-all,+net_bind_service",
            "/usr/bin/switchyard", "run", "--config", "/etc/switchyard/switchyard.yaml", "--ready-file", "/run/switchyard/ready",
        ]), directory: scenario.directory, label: "installed")
        defer { proxy.stop() }
        var ready = ""
        let end = Date().addingTimeInterval(20)
        while ready.isEmpty, proxy.isRunning, Date() < end {
            ready = (try? machine.shell("cat /run/switchyard/ready 2>/dev/null").output) ?? ""
            usleep(50_000)
        }
        guard let port = ready.split(separator: "\n").first?.split(separator: ":").last.flatMap({ UInt16($0) }) else {
            Issue.record("the installed switchyard did not start: \(proxy.stderr)")
            return
        }
        // It runs as the switchyard user with only CAP_NET_BIND_SERVICE.
        let status = try String(contentsOfFile: "/proc/\(proxy.pid)/status", encoding: .utf8)
        let uid = try machine.mustShell("id -u switchyard").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(status.contains("Uid:\t\(uid)\t\(uid)\t\(uid)"), "not running as switchyard: \(status)")
        #expect(status.contains("CapEff:\t0000000000000400") && status.contains("NoNewPrivs:\t1"), "\(status)")

        let answer = try curl(["http://127.0.0.1:\(port)/hello"])
        #expect(answer.output == "app-1 GET /hello\n", "\(answer)")
        // The admin socket in /run/switchyard, the state file in /var/lib/switchyard.
        try machine.mustShell("switchyard ctl --admin /run/switchyard/admin.sock version app v1")
        #expect(try machine.mustShell("switchyard ctl --admin /run/switchyard/admin.sock status").contains("v1"))
        #expect(try machine.mustShell("stat -c %U /var/lib/switchyard/state.json") == "switchyard\n")
        // Lines reach the file within a flush (100 ms) and the writer thread's turn: waited for.
        try eventually("the request in /var/log/switchyard/access.log", timeout: 10) {
            try machine.mustShell("cat /var/log/switchyard/access.log").contains("/hello")
        }

        // Log rotation: logrotate with the installed snippet moves the file; SIGUSR1 (what its
        // postrotate sends through systemd) makes the proxy write to a new access.log.
        try machine.mustShell("logrotate --force --state /var/lib/logrotate-test.status /etc/logrotate.d/switchyard")
        #expect(try machine.exists("/var/log/switchyard/access.log.1"), "logrotate did not rotate the access log")
        proxy.signal(SIGUSR1)
        var rotated = false
        let rotateEnd = Date().addingTimeInterval(10)
        while !rotated, Date() < rotateEnd {
            _ = try curl(["http://127.0.0.1:\(port)/after-rotation"])
            rotated = (try? machine.shell("grep -q after-rotation /var/log/switchyard/access.log").status) == 0
            usleep(100_000)
        }
        #expect(rotated, "no line reached the new access.log after SIGUSR1: \(proxy.stderr)")
        #expect(try machine.shell("grep -q after-rotation /var/log/switchyard/access.log.1").status != 0)

        proxy.signal(SIGTERM)
        #expect(proxy.waitForExit(timeout: 40) == 0, "the installed switchyard did not stop cleanly: \(proxy.stderr)")

        // Removal keeps the configuration; purge takes it, the state and the logs away.
        try machine.mustShell("dpkg --remove switchyard")
        #expect(try !machine.exists("/usr/bin/switchyard"))
        #expect(try machine.exists("/etc/switchyard/switchyard.yaml"), "remove must keep the conffiles")
        try machine.mustShell("dpkg --purge switchyard")
        for path in ["/usr/bin/switchyard", "/etc/switchyard", "/etc/logrotate.d/switchyard", "/lib/systemd/system/switchyard.service",
                     "/var/lib/switchyard", "/var/log/switchyard", "/usr/share/doc/switchyard",
                     "/etc/systemd/system/switchyard.service", "/etc/systemd/system/multi-user.target.wants/switchyard.service"] {
            #expect(try !machine.exists(path), "\(path) is left after purge")
        }
        #expect(try machine.shell("dpkg-query -W switchyard").status != 0, "dpkg still knows the package after purge")
        // The machine itself never saw any of it.
        #expect(!FileManager.default.fileExists(atPath: "/usr/bin/switchyard") && !FileManager.default.fileExists(atPath: "/etc/switchyard"))
    }

    /// The image cannot be built here (no registry for its base images), so its two promises are
    /// checked against the package: the runtime stage installs every library the binary links,
    /// and the configuration it ships is valid.
    @Test("the Dockerfile's runtime stage installs every library the .deb depends on, and its configuration is valid")
    func dockerfileMatchesDepends() throws {
        let dockerfile = try String(contentsOf: packageRoot.appendingPathComponent("Dockerfile"), encoding: .utf8)
        let stages = dockerfile.components(separatedBy: "\nFROM ")
        #expect(stages.count == 3, "a build stage and a runtime stage")
        let runtime = stages.last ?? ""
        #expect(runtime.hasPrefix("debian:bookworm-slim"))
        for line in ["USER switchyard", "EXPOSE 8080", "COPY --from=build /src/.build/release/switchyard /usr/bin/switchyard"] {
            #expect(runtime.contains(line), "the runtime stage lacks \(line)")
        }
        #expect(runtime.contains("HEALTHCHECK") && runtime.contains("\"ctl\", \"--admin\", \"/run/switchyard/admin.sock\", \"status\""))
        #expect(stages.dropLast().last?.contains("--static-swift-stdlib") == true, "the build stage must link the Swift runtime in")
        let depends = try mustRun("/usr/bin/dpkg-deb", ["-f", try packages().deb, "Depends"])
        let libraries = depends.split(separator: ",").compactMap { item in item.split(separator: " ").first.map { String($0) } }
            .filter { !["libc6", "adduser", "libgcc-s1"].contains($0) }
        #expect(!libraries.isEmpty)
        for library in libraries {
            #expect(runtime.contains(" \(library) ") || runtime.contains(" \(library)\n"), "the image lacks \(library), which the binary links")
        }
        let config = packageRoot.appendingPathComponent("conf/docker.yaml").path
        #expect(runtime.contains("COPY conf/docker.yaml /etc/switchyard/switchyard.yaml"))
        let check = try run(switchyardBinary, ["check", "--config", config])
        #expect(check.status == 0, "conf/docker.yaml: \(check.output)\(check.error)")
        let text = try String(contentsOfFile: config, encoding: .utf8)
        #expect(text.contains("bind: \"*:8080\"") && text.contains("socket: /run/switchyard/admin.sock"))
    }

    @Test("the release tarball unpacks to a runnable binary with the conf examples, the unit and the docs")
    func tarball() throws {
        let built = try packages()
        let name = URL(fileURLWithPath: built.tarball).lastPathComponent
        #expect(name.hasPrefix("switchyard-") && name.hasSuffix("-linux-x86_64.tar.gz"), "\(name)")
        let listing = try mustRun("/usr/bin/tar", ["-tzvf", built.tarball])
        let top = String(name.dropLast(".tar.gz".count))
        for path in ["bin/switchyard", "conf/switchyard.yaml", "conf/example.yaml", "conf/switchyard.service", "conf/switchyard.logrotate",
                     "docs/install.md", "docs/configuration.md", "README.md", "COPYRIGHT"] {
            #expect(listing.contains(" \(top)/\(path)\n"), "\(path) is missing from the tarball:\n\(listing)")
        }
        let binaryLine = listing.split(separator: "\n").first { $0.hasSuffix(" \(top)/bin/switchyard") } ?? ""
        #expect(binaryLine.hasPrefix("-rwxr-xr-x 0/0 "), "the binary must be executable and owned by root: \(binaryLine)")
        let unpacked = built.directory + "/unpacked"
        try FileManager.default.createDirectory(atPath: unpacked, withIntermediateDirectories: true)
        try mustRun("/usr/bin/tar", ["-xzf", built.tarball, "-C", unpacked])
        let binary = "\(unpacked)/\(top)/bin/switchyard"
        #expect(try mustRun(binary, ["version"]).hasPrefix("switchyard "))
        for config in ["switchyard.yaml", "example.yaml"] {
            let r = try run(binary, ["check", "--config", "\(unpacked)/\(top)/conf/\(config)"])
            #expect(r.status == 0, "\(config): \(r.output)\(r.error)")
        }
        let unit = try String(contentsOfFile: "\(unpacked)/\(top)/conf/switchyard.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/switchyard run --config /etc/switchyard/switchyard.yaml"))
    }
}
