// Replaced by the allocation benchmark in the next step.
@main
struct BenchCommand {
    static func main() {}
}
