/// The one version of the package: every tool's `--version` prints it, the Debian package and
/// `CHANGELOG.md` carry it.
public enum ShmTransportVersion {
    public static let current = "0.7.0"
}
