import SwitchyardConfig

/// How much of its configured weight a server gets while it ramps up after entering rotation
/// (slow start) and according to what it reports about itself (`X-Switchyard-Load`).
public enum WeightScaling {
    /// Slow start: from 10% up to 100% of the weight over `durationMs` after entering rotation;
    /// nil once the ramp is over (or for a zero duration).
    public static func slowStartPercent(elapsedMs: Int64, durationMs: Int64) -> Int? {
        guard durationMs > 0, elapsedMs < durationMs else { return nil }
        let percent = Int(max(0, elapsedMs) * 100 / durationMs)
        return max(10, percent)
    }

    /// What an instance's report makes of its weight: the weight it asks for (0...100%), else half
    /// when its CPU is above `overloadCPU`, else all of it.
    public static func loadPercent(_ load: ReportedLoad, overloadCPU: Double) -> Int {
        if let weight = load.weightPercent { return max(0, min(100, weight)) }
        if let cpu = load.cpu, cpu > overloadCPU { return 50 }
        return 100
    }

    /// The ramp and the report together (each a percent; nil ramp means none).
    public static func combined(ramp: Int?, load: Int) -> Int { (ramp ?? 100) * load / 100 }
}
