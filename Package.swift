// swift-tools-version: 6.2
import PackageDescription

/// Settings every Swift target shares: Swift 6 language mode with the upcoming features that make
/// imports and existentials explicit.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .treatAllWarnings(as: .error),
]

/// C shims build with every warning as an error.
let strictCSettings: [CSetting] = [
    .unsafeFlags(["-Wall", "-Wextra", "-Werror"])
]

let package = Package(
    name: "ShmTransport",
    products: [
        .library(name: "ShmCleanup", targets: ["ShmCleanup"]),
        .library(name: "ShmCore", targets: ["ShmCore"]),
        .library(name: "ShmTransport", targets: ["ShmTransport"]),
        .executable(name: "shmmonitor", targets: ["shmmonitor"]),
        .executable(name: "shm-keepalive", targets: ["shm-keepalive"]),
        .library(name: "ShmDevice", targets: ["ShmDevice"]),
        .executable(name: "shm-bsampler", targets: ["shm-bsampler"]),
        .executable(name: "shm-sink", targets: ["shm-sink"]),
        .executable(name: "shm-processor", targets: ["shm-processor"]),
        .executable(name: "shmbench", targets: ["shmbench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Layer 1: C shims — only what Swift cannot call.
        .target(name: "CShmTransport", cSettings: strictCSettings),
        // Counts heap allocations of the executable that links it (benchmarks and test peers only).
        .target(name: "CMallocCounter", cSettings: strictCSettings),
        .systemLibrary(
            name: "CZeroMQ",
            pkgConfig: "libzmq",
            providers: [.apt(["libzmq3-dev"])]
        ),

        // Layer 2: the cleanup engine. No ZeroMQ here.
        .target(
            name: "ShmCleanup",
            dependencies: [
                "CShmTransport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),

        // Layer 3: the shared-memory core (segments, management segment, allocators). No ZeroMQ here.
        .target(
            name: "ShmCore",
            dependencies: [
                "ShmCleanup", "CShmTransport",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            exclude: ["README.md"],
            swiftSettings: strictSettings
        ),

        // Layer 4: the transport (messages, sockets, poller; shmem and zeromq behind one API).
        .target(
            name: "ShmTransport",
            dependencies: [
                "ShmCore", "ShmCleanup", "CZeroMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),

        // Layer 5: devices (channels from FairMQ's JSON and --channel-config, the run loop as a
        // Service, the built-in sampler, sink and processor).
        .target(
            name: "ShmDevice",
            dependencies: [
                "ShmTransport", "ShmCore", "ShmCleanup",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),

        // Layer 6: executables.
        .executableTarget(
            name: "shmmonitor",
            dependencies: [
                "ShmCleanup", "ShmCore", "CShmTransport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),

        .executableTarget(
            name: "shm-keepalive",
            dependencies: [
                "ShmCleanup", "ShmCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),

        .executableTarget(
            name: "shm-bsampler",
            dependencies: ["ShmDevice", "ShmCleanup", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "shm-sink",
            dependencies: ["ShmDevice", "ShmCleanup", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "shm-processor",
            dependencies: ["ShmDevice", "ShmCleanup", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strictSettings
        ),

        // Drives SessionMemory from a real process for the multi-process and crash tests.
        .executableTarget(
            name: "shmcore-worker",
            dependencies: [
                "ShmCore", "ShmCleanup",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: strictSettings
        ),

        // One end of a transfer in its own process, for the transport's cross-process tests.
        .executableTarget(
            name: "transport-peer",
            dependencies: [
                "ShmTransport", "ShmCore", "ShmCleanup", "ShmTestSupport", "CMallocCounter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),

        // Hostile bytes for every reader of shared-memory tables and metadata frames (the fuzz suite).
        .executableTarget(
            name: "shm-fuzz",
            dependencies: [
                "ShmTransport", "ShmCore", "ShmCleanup", "ShmTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),

        // The receiving end of region messages in its own process, for the region tests.
        .executableTarget(
            name: "region-peer",
            dependencies: [
                "ShmTransport", "ShmCleanup",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),

        // A plain program that keeps its factory in globals and ends without tearing it down.
        .executableTarget(
            name: "global-factory-peer",
            dependencies: ["ShmTransport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),

        // Benchmarks (numbers in docs/, never in timed tests). shmbench is the main job.
        .executableTarget(
            name: "shmbench",
            dependencies: [
                "ShmDevice", "ShmTransport", "ShmCore", "ShmCleanup", "CMallocCounter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Benchmarks/shmbench",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "shmcore-bench",
            dependencies: [
                "ShmCore", "ShmCleanup",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/shmcore-bench",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "shmcleanup-bench",
            dependencies: [
                "ShmCleanup",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/shmcleanup-bench",
            swiftSettings: strictSettings
        ),

        // Test support: private shm directories, running the built tools, holder processes.
        .target(
            name: "ShmTestSupport",
            dependencies: ["ShmCleanup"],
            path: "Tests/ShmTestSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ShmCleanupTests",
            dependencies: ["ShmCleanup", "ShmTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ShmCoreTests",
            dependencies: [
                "ShmCore", "ShmCleanup", "ShmTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ShmTransportTests",
            dependencies: [
                "ShmTransport", "ShmCore", "ShmCleanup", "ShmTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ShmDeviceTests",
            dependencies: [
                "ShmDevice", "ShmTransport", "ShmCore", "ShmCleanup", "ShmTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "shmmonitorTests",
            dependencies: [
                "ShmCleanup", "ShmCore", "ShmTestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
