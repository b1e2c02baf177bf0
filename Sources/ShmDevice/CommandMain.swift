import ArgumentParser
import Foundation

/// The `main` of the device and benchmark executables, with the project's exit statuses: a
/// usage error exits 2 (not ArgumentParser's 64), `--help` 0, an ``ExitCode`` as thrown, any
/// other error 1 after printing it.
public enum CommandMain {
    public static func run<Command: AsyncParsableCommand>(_: Command.Type) async -> Never {
        let command: Command
        do {
            let parsed = try Command.parseAsRoot()
            guard let ours = parsed as? Command else {
                // `--help`, `help`: ArgumentParser's own help command, whose run throws the text
                var help = parsed
                do { try help.run() } catch { exitForParse(error, Command.self) }
                Foundation.exit(0)
            }
            command = ours
        } catch {
            exitForParse(error, Command.self)
        }
        do {
            var running = command
            try await running.run()
            Foundation.exit(0)
        } catch {
            exitForRun(error, Command.self)
        }
    }

    public static func run<Command: ParsableCommand>(_: Command.Type) -> Never {
        do {
            var command = try Command.parseAsRoot()
            let ours = command is Command  // otherwise ArgumentParser's help command (`--help`)
            do {
                try command.run()
                Foundation.exit(0)
            } catch {
                if !ours { exitForParse(error, Command.self) }
                exitForRun(error, Command.self)
            }
        } catch {
            exitForParse(error, Command.self)
        }
    }

    private static func exitForParse<Command: ParsableCommand>(_ error: any Error, _: Command.Type) -> Never {
        if Command.exitCode(for: error) == .success {
            print(Command.fullMessage(for: error))
            Foundation.exit(0)
        }
        FileHandle.standardError.write(Data((Command.fullMessage(for: error) + "\n").utf8))
        Foundation.exit(2)
    }

    private static func exitForRun<Command: ParsableCommand>(_ error: any Error, _: Command.Type) -> Never {
        if let code = error as? ExitCode { Foundation.exit(code.rawValue) }
        FileHandle.standardError.write(Data(("Error: \(error)\n").utf8))
        Foundation.exit(1)
    }
}
