<#
.SYNOPSIS
    SkyReels Studio installer for Windows: a private virtual environment, the right torch build, a
    launcher, a Start-menu shortcut and an "Apps & features" entry. Re-run it to update in place.

.DESCRIPTION
    Run from a checkout (or an unpacked release):
        powershell -ExecutionPolicy Bypass -File installer\install.ps1
    Remove it again:
        powershell -ExecutionPolicy Bypass -File installer\install.ps1 -Uninstall
    Model weights are never touched: they live in the Hugging Face cache or in your own folders.

.PARAMETER Prefix
    Install folder (default: %LOCALAPPDATA%\SkyReelsStudio).
.PARAMETER Python
    Python 3.11+ to build the environment with (default: the newest one the `py` launcher knows).
.PARAMETER Torch
    auto (default) | cuda | cpu | pinned. auto: a local torch wheel of the pinned version if one is in
    -FindLinks / PIP_FIND_LINKS, else the CUDA build when `nvidia-smi` works, else the CPU build.
.PARAMETER TorchIndex
    Take torch from this index instead (e.g. https://download.pytorch.org/whl/cu126 for older drivers).
.PARAMETER NoShortcut
    No Start-menu shortcut.
.PARAMETER Offline
    Never use the network (pip --no-index plus the -FindLinks folders).
.PARAMETER FindLinks
    Folders of wheels for pip.
.PARAMETER ReuseEnv
    Reuse the packages of this Python environment; only the app itself is installed (--no-deps).
.PARAMETER DryRun
    Print what would be done, change nothing.
.PARAMETER Uninstall
    Remove the install (shortcut and Apps & features entry too).
#>
[CmdletBinding()]
param(
    [string]$Prefix = (Join-Path $env:LOCALAPPDATA "SkyReelsStudio"),
    [string]$Python = "",
    [ValidateSet("auto", "cuda", "cpu", "pinned")][string]$Torch = "auto",
    [string]$TorchIndex = "",
    [switch]$NoShortcut,
    [switch]$Offline,
    [string[]]$FindLinks = @(),
    [string]$ReuseEnv = "",
    [switch]$DryRun,
    [switch]$Uninstall
)

$ErrorActionPreference = "Stop"
$Marker = ".skyreels-studio-install"
$CudaIndex = "https://download.pytorch.org/whl/cu128"   # PyPI's Windows torch wheels are CPU-only
$ShortcutPath = Join-Path ([Environment]::GetFolderPath("Programs")) "SkyReels Studio.lnk"
$UninstallKey = "HKCU:\Software\Microsoft\Windows\CurrentVersion\Uninstall\SkyReelsStudio"
$Src = Split-Path -Parent $PSScriptRoot

function Log([string]$Message) { Write-Host "[install] $Message" }
function Die([string]$Message) { Write-Host "[install] error: $Message" -ForegroundColor Red; exit 1 }

# Runs a native command (or prints it with -DryRun) and stops on a non-zero exit code.
function Invoke-Step([string]$Exe, [string[]]$Arguments) {
    if ($DryRun) { Write-Host "+ $Exe $($Arguments -join ' ')"; return }
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { Die "'$Exe $($Arguments -join ' ')' failed with exit code $LASTEXITCODE" }
}

# Exit code of a native command whose output does not matter. Windows PowerShell 5.1 turns redirected
# stderr lines into errors under ErrorActionPreference=Stop, so this runs with Continue.
function Invoke-Quiet([string]$Exe, [string[]]$Arguments) {
    $saved = $ErrorActionPreference
    $ErrorActionPreference = "Continue"
    try { & $Exe @Arguments *> $null; return $LASTEXITCODE } catch { return 1 } finally { $ErrorActionPreference = $saved }
}

function Test-Python([string]$Exe, [string[]]$PreArgs = @()) {
    $saved = $ErrorActionPreference
    $ErrorActionPreference = "Continue"
    try {
        $out = & $Exe @PreArgs -c "import sys; print(sys.executable if sys.version_info >= (3, 11) else '')" 2>$null
        if ($LASTEXITCODE -eq 0 -and $out) { return ($out | Select-Object -Last 1).Trim() }
    } catch { } finally { $ErrorActionPreference = $saved }
    return ""
}

$Prefix = [IO.Path]::GetFullPath($Prefix)

# ------------------------------------------------------------------------------------------- uninstall
if ($Uninstall) {
    if (-not (Test-Path $Prefix)) { Log "nothing installed in $Prefix"; exit 0 }
    # Refuse to delete a folder this script did not create (a mistyped -Prefix must not cost data).
    if (-not (Test-Path (Join-Path $Prefix $Marker))) {
        Die "$Prefix was not made by this installer (no $Marker); remove it by hand if you are sure"
    }
    Set-Location $env:TEMP   # the script itself may live under $Prefix
    $manifest = Join-Path $Prefix "install-manifest.txt"
    if (Test-Path $manifest) {
        foreach ($item in Get-Content $manifest) {
            if (-not $item) { continue }
            if ($DryRun) { Write-Host "+ remove $item"; continue }
            if ($item.StartsWith("HKCU:")) {
                if (Test-Path $item) { Remove-Item $item -Recurse -Force; Log "removed $item" }
            } elseif (Test-Path -LiteralPath $item) {
                Remove-Item -LiteralPath $item -Force; Log "removed $item"
            }
        }
    }
    if ($DryRun) { Write-Host "+ remove $Prefix" } else { Remove-Item -LiteralPath $Prefix -Recurse -Force }
    Log "removed $Prefix"
    $hub = if ($env:HF_HUB_CACHE) { $env:HF_HUB_CACHE } elseif ($env:HF_HOME) { Join-Path $env:HF_HOME "hub" } else { Join-Path $env:USERPROFILE ".cache\huggingface\hub" }
    Log "model weights were kept: the Hugging Face cache ($hub) and the folders in $env:APPDATA\SkyReels Studio\models.json; delete those by hand to free the space."
    exit 0
}

# ------------------------------------------------------------------------------------------- python
if ($ReuseEnv) {
    if (-not (Test-Python $ReuseEnv)) { Die "-ReuseEnv $ReuseEnv is not a Python 3.11+ interpreter" }
    if (-not $Python) { $Python = $ReuseEnv }
}
if (-not $Python) {
    foreach ($version in @("-3.13", "-3.12", "-3.11")) {
        if (Get-Command py -ErrorAction SilentlyContinue) {
            $found = Test-Python "py" @($version)
            if ($found) { $Python = $found; break }
        }
    }
    if (-not $Python) {
        foreach ($name in @("python", "python3")) {
            # The Microsoft Store alias prints nothing useful and fails: Test-Python rejects it.
            if (Get-Command $name -ErrorAction SilentlyContinue) {
                $found = Test-Python $name
                if ($found) { $Python = $found; break }
            }
        }
    }
    if (-not $Python) { Die "Python 3.11 or newer is needed: install it from https://www.python.org/downloads/ (tick 'py launcher') or pass -Python" }
}
if (-not (Test-Python $Python)) { Die "$Python is not Python 3.11+" }
if (-not ((Test-Path (Join-Path $Src "pyproject.toml")) -and (Test-Path (Join-Path $Src "main.py")))) {
    Die "run this script from a SkyReels Studio checkout ($Src has no pyproject.toml/main.py)"
}
$pinMatch = Select-String -Path (Join-Path $Src "pyproject.toml") -Pattern '"torch==([^"]+)"' | Select-Object -First 1
if (-not $pinMatch) { Die "no torch==VERSION pin found in pyproject.toml" }
$TorchPin = $pinMatch.Matches[0].Groups[1].Value

# ------------------------------------------------------------------------------------------- torch choice
$searchLinks = @($FindLinks)
if ($env:PIP_FIND_LINKS) { $searchLinks += ($env:PIP_FIND_LINKS -split '\s+' | ForEach-Object { $_ -replace '^file:///?', '' }) }
function Find-LocalTorch {
    foreach ($dir in $searchLinks) {
        if ($dir -and (Test-Path $dir) -and (Get-ChildItem -Path $dir -Filter "torch-$TorchPin*.whl" -ErrorAction SilentlyContinue)) { return $dir }
    }
    return ""
}
function Test-Nvidia {
    if (-not (Get-Command nvidia-smi -ErrorAction SilentlyContinue)) { return $false }
    return ((Invoke-Quiet "nvidia-smi" @("-L")) -eq 0)
}

if ($ReuseEnv) {
    $torchPlan = "reused from $ReuseEnv (not installed)"
} elseif ($Torch -eq "auto") {
    $wheelDir = Find-LocalTorch
    if ($wheelDir) { $Torch = "pinned"; $torchPlan = "pinned torch==$TorchPin from the local wheel in $wheelDir" }
    elseif (Test-Nvidia) { $Torch = "cuda"; $torchPlan = "CUDA build torch==$TorchPin (nvidia-smi works)" }
    else { $Torch = "cpu"; $torchPlan = "CPU build torch==$TorchPin (no working nvidia-smi)" }
} else {
    $torchPlan = "$Torch build torch==$TorchPin (as asked)"
}
if ($Torch -eq "cuda" -and -not $TorchIndex) { $TorchIndex = $CudaIndex }
if ($TorchIndex) { $torchPlan += ", from $TorchIndex" }

$pipNet = @()
if ($Offline) { $pipNet += "--no-index" }
foreach ($dir in $FindLinks) { $pipNet += @("--find-links", $dir) }

$Venv = Join-Path $Prefix "venv"
$Vpy = Join-Path $Venv "Scripts\python.exe"
$Vpyw = Join-Path $Venv "Scripts\pythonw.exe"
$App = Join-Path $Prefix "app"
Log "source:  $Src"
Log "prefix:  $Prefix"
Log "python:  $Python"
Log "torch:   $torchPlan"
if ($DryRun) { Log "dry run: nothing is changed" }

# ------------------------------------------------------------------------------------------- app files
# A fresh copy on every run (an update removes files the new version no longer has); the environment
# installs it in editable mode, so resources\ stays next to the code.
if ($DryRun) {
    Write-Host "+ copy $Src -> $App"
} else {
    New-Item -ItemType Directory -Force -Path $Prefix | Out-Null
    $new = Join-Path $Prefix "app.new"
    $old = Join-Path $Prefix "app.old"
    foreach ($dir in @($new, $old)) { if (Test-Path $dir) { Remove-Item -LiteralPath $dir -Recurse -Force } }
    & robocopy $Src $new /E /NFL /NDL /NJH /NJS /NP /XD .venv .git __pycache__ .pytest_cache .ruff_cache .hypothesis build dist out result /XF *.pyc | Out-Null
    if ($LASTEXITCODE -ge 8) { Die "copying $Src failed (robocopy exit code $LASTEXITCODE)" }
    if (Test-Path $App) { Rename-Item -LiteralPath $App -NewName "app.old" }
    Rename-Item -LiteralPath $new -NewName "app"
    if (Test-Path $old) { Remove-Item -LiteralPath $old -Recurse -Force }
    Set-Content -Path (Join-Path $Prefix $Marker) -Value "skyreels-studio installer`nsource=$Src"
}

# ------------------------------------------------------------------------------------------- environment
$venvOk = (Test-Path $Vpy) -and (Test-Python $Vpy)
if ($venvOk) {
    Log "reusing the environment in $Venv"
} elseif ($ReuseEnv) {
    Invoke-Step $Python @("-m", "venv", "--without-pip", $Venv)
} else {
    Invoke-Step $Python @("-m", "venv", $Venv)
}
if ($ReuseEnv) {
    if ($DryRun) {
        Write-Host "+ link the site-packages of $ReuseEnv into $Venv"
    } else {
        $reuseVer = & $ReuseEnv -c "import sys; print('%d.%d' % sys.version_info[:2])"
        $venvVer = & $Vpy -c "import sys; print('%d.%d' % sys.version_info[:2])"
        if ($reuseVer -ne $venvVer) { Die "-ReuseEnv is Python $reuseVer but the environment is $venvVer: pass -Python $ReuseEnv" }
        $siteDir = & $Vpy -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        $reused = & $ReuseEnv -c "import site; print('\n'.join(p for p in site.getsitepackages() if 'site-packages' in p))"
        Set-Content -Path (Join-Path $siteDir "_skyreels_reused_env.pth") -Value $reused
    }
}

$pip = @("-m", "pip", "--disable-pip-version-check")
if (-not $ReuseEnv) {
    Invoke-Step $Vpy ($pip + @("install", "-q") + $pipNet + @("--upgrade", "pip"))
    $torchArgs = @("torch==$TorchPin")
    if ($TorchIndex -and -not $Offline) { $torchArgs += @("--index-url", $TorchIndex, "--extra-index-url", "https://pypi.org/simple") }
    if (-not $DryRun) {
        if ((Invoke-Quiet $Vpy @("-c", "import torch")) -eq 0) {
            # An install made for another variant (CPU torch, GPU added later) is replaced, not kept.
            $haveCuda = & $Vpy -c "import torch; print(1 if torch.version.cuda else 0)"
            $wantCuda = if ($Torch -eq "cuda") { "1" } else { "0" }
            if ($Torch -ne "pinned" -and $haveCuda -ne $wantCuda) { $torchArgs += "--force-reinstall" }
        }
    }
    Invoke-Step $Vpy ($pip + @("install") + $pipNet + $torchArgs)
    Invoke-Step $Vpy ($pip + @("install") + $pipNet + @("-e", $App))
} else {
    Invoke-Step $Vpy ($pip + @("install", "-q", "--no-deps", "--no-build-isolation", "--no-index") + $pipNet + @("-e", $App))
}

# ------------------------------------------------------------------------------------------- launcher, shortcut
$manifestPath = Join-Path $Prefix "install-manifest.txt"
$launcher = Join-Path $Prefix "skyreels-studio.cmd"
if ($DryRun) {
    Write-Host "+ write $launcher"
} else {
    Set-Content -Path $manifestPath -Value @()
    Set-Content -Path $launcher -Encoding ASCII -Value "@`"%~dp0venv\Scripts\python.exe`" `"%~dp0app\main.py`" %*"
}

$icon = Join-Path $Prefix "app.ico"
if (-not $NoShortcut) {
    if ($DryRun) {
        Write-Host "+ write $ShortcutPath and $UninstallKey"
    } else {
        # Shortcuts need an .ico: render resources\icons\app.svg with the Qt that was just installed.
        $svg = Join-Path $App "resources\icons\app.svg"
        $iconLocation = "$Vpyw,0"
        if (Test-Path $svg) {
            $render = @"
import sys
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer
app = QGuiApplication(sys.argv[:1])
image = QImage(256, 256, QImage.Format.Format_ARGB32)
image.fill(0)
painter = QPainter(image)
QSvgRenderer(sys.argv[1]).render(painter)
painter.end()
sys.exit(0 if image.save(sys.argv[2], 'ICO') else 1)
"@
            $env:QT_QPA_PLATFORM = "offscreen"
            $script = Join-Path $Prefix "render-icon.py"
            Set-Content -Path $script -Value $render -Encoding ASCII
            $rendered = Invoke-Quiet $Vpy @($script, $svg, $icon)
            Remove-Item -LiteralPath $script -Force
            Remove-Item Env:\QT_QPA_PLATFORM
            if ($rendered -eq 0 -and (Test-Path $icon)) { $iconLocation = "$icon,0" } else { Log "note: could not convert the icon; the shortcut uses Python's" }
        } else {
            Log "note: $svg is missing; the shortcut uses Python's icon"
        }
        $shell = New-Object -ComObject WScript.Shell
        $shortcut = $shell.CreateShortcut($ShortcutPath)
        $shortcut.TargetPath = $Vpyw
        $shortcut.Arguments = "`"$App\main.py`""
        $shortcut.WorkingDirectory = $App
        $shortcut.IconLocation = $iconLocation
        $shortcut.Description = "Edit video and generate shots with the SkyReels-V3 models"
        $shortcut.Save()
        Add-Content -Path $manifestPath -Value $ShortcutPath

        New-Item -Path $UninstallKey -Force | Out-Null
        $uninstallCmd = "powershell.exe -NoProfile -ExecutionPolicy Bypass -File `"$App\installer\install.ps1`" -Uninstall -Prefix `"$Prefix`""
        Set-ItemProperty -Path $UninstallKey -Name DisplayName -Value "SkyReels Studio"
        Set-ItemProperty -Path $UninstallKey -Name DisplayIcon -Value ($iconLocation -replace ',0$', '')
        Set-ItemProperty -Path $UninstallKey -Name InstallLocation -Value $Prefix
        Set-ItemProperty -Path $UninstallKey -Name Publisher -Value "SkyReels Studio"
        Set-ItemProperty -Path $UninstallKey -Name UninstallString -Value $uninstallCmd
        Set-ItemProperty -Path $UninstallKey -Name NoModify -Value 1 -Type DWord
        Set-ItemProperty -Path $UninstallKey -Name NoRepair -Value 1 -Type DWord
        Add-Content -Path $manifestPath -Value $UninstallKey
    }
}

# ------------------------------------------------------------------------------------------- check
if (-not $DryRun) {
    & $Vpy -c "import core.model_store, core.generation, main"
    if ($LASTEXITCODE -ne 0) { Die "the installed app does not import; see the messages above" }
    & $Vpy (Join-Path $App "main.py") --help | Out-Null
    if ($LASTEXITCODE -ne 0) { Die "the launcher does not start" }
}
Log "done. Start it from the Start menu (SkyReels Studio) or with: $launcher"
Log "check the machine: $launcher doctor    get the models: $launcher models list"
Log "update: run this script again;  remove: Settings > Apps > SkyReels Studio, or install.ps1 -Uninstall -Prefix `"$Prefix`""
